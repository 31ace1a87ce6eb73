import { describe, expect, it } from 'vitest';
import { ConfigError, DEFAULT_ANTHROPIC_MODEL, loadConfig } from '../../src/agent/config.js';
import { advertisedUrl } from '../../src/agent/agent.js';

const base = { WORKSPACE_ID: 'ws-1', MOLECULE_AGENT_TOKEN: 'agent-tok' };

describe('agent config from env', () => {
  it('fails naming MOLECULE_AGENT_TOKEN or WORKSPACE_ID when missing', () => {
    expect(() => loadConfig({ WORKSPACE_ID: 'ws-1' })).toThrow(/MOLECULE_AGENT_TOKEN/);
    expect(() => loadConfig({ MOLECULE_AGENT_TOKEN: 'x' })).toThrow(/WORKSPACE_ID/);
    try {
      loadConfig({ WORKSPACE_ID: 'ws', MOLECULE_AGENT_TOKEN: '  ' });
      expect.unreachable();
    } catch (err) {
      expect(err).toBeInstanceOf(ConfigError);
      expect((err as ConfigError).variable).toBe('MOLECULE_AGENT_TOKEN');
    }
  });

  it('applies the documented defaults and runs standalone without platform settings', () => {
    const c = loadConfig(base);
    expect(c.port).toBe(8000);
    expect(c.host).toBe('::');
    expect(c.heartbeatIntervalS).toBe(10);
    expect(c.workspace).toEqual({ id: 'ws-1', name: 'ws-1', role: '', runtime: 'hermes', tier: 2, region: 'local' });
    expect(c.platform).toBeNull();
    expect(c.model).toBeNull();
    expect(c.warnings.join('\n')).toMatch(/PLATFORM_URL and MOLECULE_WORKSPACE_TOKEN not set: running standalone/);
    expect(loadConfig({ ...base, PLATFORM_URL: 'http://p' }).warnings.join()).toMatch(/MOLECULE_WORKSPACE_TOKEN not set/);
  });

  it('prefers FLY_REGION over MOLECULE_REGION', () => {
    expect(loadConfig({ ...base, MOLECULE_REGION: 'ams' }).workspace.region).toBe('ams');
    expect(loadConfig({ ...base, MOLECULE_REGION: 'ams', FLY_REGION: 'ord' }).workspace.region).toBe('ord');
  });

  it('reads the full contract', () => {
    const c = loadConfig({
      ...base,
      WORKSPACE_NAME: 'alpha',
      WORKSPACE_ROLE: 'Researcher',
      WORKSPACE_RUNTIME: 'langgraph',
      WORKSPACE_TIER: '4',
      PLATFORM_URL: 'http://platform:8080/',
      MOLECULE_WORKSPACE_TOKEN: 'ws-tok',
      PORT: '9001',
      HEARTBEAT_INTERVAL_S: '2.5',
      AGENT_HOST: '127.0.0.1',
      FLY_PRIVATE_IP: 'fdaa::3',
    });
    expect(c.workspace).toMatchObject({ name: 'alpha', role: 'Researcher', runtime: 'langgraph', tier: 4 });
    expect(c.platform).toEqual({ url: 'http://platform:8080', token: 'ws-tok' });
    expect(c.port).toBe(9001);
    expect(c.heartbeatIntervalS).toBe(2.5);
    expect(c.host).toBe('127.0.0.1');
    expect(c.privateIp).toBe('fdaa::3');
    expect(c.warnings).toEqual([]);
  });

  it('rejects a bad PORT and warns (with defaults) on a bad tier or interval', () => {
    expect(() => loadConfig({ ...base, PORT: 'eighty' })).toThrow(/PORT/);
    const c = loadConfig({ ...base, WORKSPACE_TIER: '9', HEARTBEAT_INTERVAL_S: '-1' });
    expect(c.workspace.tier).toBe(2);
    expect(c.heartbeatIntervalS).toBe(10);
    expect(c.warnings.join('\n')).toMatch(/WORKSPACE_TIER/);
    expect(c.warnings.join('\n')).toMatch(/HEARTBEAT_INTERVAL_S/);
  });

  it('chooses the model provider from the keys', () => {
    expect(loadConfig({ ...base, OPENAI_API_KEY: 'sk-1' }).model).toEqual({
      provider: 'openai',
      apiKey: 'sk-1',
      baseUrl: undefined,
      model: 'gpt-4o-mini',
    });
    expect(loadConfig({ ...base, OPENAI_API_KEY: 'sk-1', OPENAI_BASE_URL: 'http://m/v1', MODEL: 'llama3' }).model).toMatchObject({
      baseUrl: 'http://m/v1',
      model: 'llama3',
    });
    expect(loadConfig({ ...base, ANTHROPIC_API_KEY: 'ak' }).model).toMatchObject({ provider: 'anthropic', model: DEFAULT_ANTHROPIC_MODEL });
    expect(loadConfig({ ...base, ANTHROPIC_API_KEY: 'ak', OPENAI_API_KEY: 'sk', MODEL: 'claude-x' }).model?.provider).toBe('anthropic');
    expect(loadConfig({ ...base, ANTHROPIC_API_KEY: 'ak', OPENAI_API_KEY: 'sk', MODEL_PROVIDER: 'anthropic' }).model?.provider).toBe(
      'anthropic',
    );
  });

  it('builds the registered URL from FLY_PRIVATE_IP, a concrete host, or the hostname', () => {
    expect(advertisedUrl({ privateIp: 'fdaa:0:1::2' }, '::', 8000)).toBe('http://[fdaa:0:1::2]:8000');
    expect(advertisedUrl({}, '127.0.0.1', 4100)).toBe('http://127.0.0.1:4100');
    expect(advertisedUrl({}, '::', 8000)).toMatch(/^http:\/\/[^[\]/]+:8000$/);
    expect(advertisedUrl({}, '0.0.0.0', 8000)).not.toContain('0.0.0.0');
  });
});
