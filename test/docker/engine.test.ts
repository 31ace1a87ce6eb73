import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../src/core/config.js';
import { dockerSocketPath, engineFailure } from '../../src/backends/docker/engine.js';
import { containerName, stateOf, volumeName } from '../../src/backends/docker/index.js';
import { servedToAgents } from '../../src/server/agent-listener.js';

describe('Docker backend, no engine needed', () => {
  it('reads DOCKER_HOST as a socket path or unix:// URL and refuses remote engines with a message', () => {
    expect(dockerSocketPath(undefined)).toBe('/var/run/docker.sock');
    expect(dockerSocketPath('')).toBe('/var/run/docker.sock');
    expect(dockerSocketPath('unix:///tmp/d/dockerd.sock')).toBe('/tmp/d/dockerd.sock');
    expect(dockerSocketPath('/run/user/1000/docker.sock')).toBe('/run/user/1000/docker.sock');
    expect(() => dockerSocketPath('tcp://10.0.0.5:2375')).toThrow(ConfigError);
    expect(() => dockerSocketPath('ssh://me@box')).toThrow(/must be a local unix socket/);
  });

  it('decides on the HTTP status and keeps the engine’s message (Docker or Podman shaped)', () => {
    expect(engineFailure({ statusCode: 404, json: { message: 'No such image: x' } })).toEqual({ status: 404, message: 'No such image: x' });
    expect(engineFailure({ statusCode: 409, json: { cause: 'name in use', message: 'container name "ws-1" is already in use', response: 409 } }).status).toBe(409);
    expect(engineFailure(Object.assign(new Error('connect ENOENT /x.sock'), { code: 'ENOENT' }))).toEqual({ status: null, message: 'ENOENT: connect ENOENT /x.sock' });
  });

  it('names containers and volumes after the workspace', () => {
    expect(containerName('0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0')).toBe('ws-0f1e2d3c4b5a');
    expect(volumeName('ws-0f1e2d3c4b5a')).toBe('ws-0f1e2d3c4b5a-data');
  });

  it('words exits: OOM from State.OOMKilled or the engine’s oom event, a kill, a clean stop, an engine error', () => {
    expect(stateOf({ Status: 'exited', OOMKilled: true, ExitCode: 137 }, 1)).toEqual({
      state: 'failed',
      exitCode: 137,
      reason: 'OOM: the kernel killed the agent at the tier 1 memory limit (256 MB; exit code 137)',
    });
    expect(stateOf({ Status: 'exited', OOMKilled: false, ExitCode: 137 }, 2, true).reason).toMatch(/^OOM: .*tier 2 memory limit \(512 MB/);
    expect(stateOf({ Status: 'exited', ExitCode: 137 }, 2)).toMatchObject({ state: 'failed', reason: 'killed (SIGKILL, exit code 137)' });
    expect(stateOf({ Status: 'exited', ExitCode: 0 }, 2)).toMatchObject({ state: 'stopped', reason: 'exited with code 0' });
    expect(stateOf({ Status: 'exited', ExitCode: 3 }, 2)).toMatchObject({ state: 'failed', reason: 'exited with code 3' });
    expect(stateOf({ Status: 'exited', ExitCode: 127, Error: 'exec: "node": not found' }, 2).reason).toMatch(/could not run it: exec/);
    expect(stateOf({ Status: 'running', Running: true }, 2)).toEqual({ state: 'running' });
    expect(stateOf({ Status: 'created' }, 2)).toEqual({ state: 'starting' });
  });

  it('serves agents only what agents call on the bridge listener', () => {
    expect(servedToAgents('POST', '/registry/register', undefined)).toBe(true);
    expect(servedToAgents('POST', '/registry/heartbeat', undefined)).toBe(true);
    expect(servedToAgents('POST', '/workspaces/abc/a2a', 'Bearer mws_x')).toBe(true);
    expect(servedToAgents('POST', '/workspaces/abc/a2a', undefined)).toBe(false);
    expect(servedToAgents('GET', '/registry/register', undefined)).toBe(false);
    // A2A discovery, with a bearer (the workspace token; the API applies the access rules).
    for (const p of ['/agents', '/workspaces/abc/a2a/.well-known/agent-card.json', '/workspaces/abc/.well-known/agent-card.json', '/workspaces/abc/agent-card']) {
      expect(servedToAgents('GET', p, 'Bearer mws_x')).toBe(true);
      expect(servedToAgents('GET', p, undefined)).toBe(false);
      expect(servedToAgents('POST', p, 'Bearer mws_x')).toBe(false);
    }
    expect(servedToAgents('GET', '/workspaces', 'Bearer mws_x')).toBe(false);
    for (const p of ['/workspaces', '/settings/secrets', '/workspaces/abc/restart', '/workspaces/abc/x/a2a', '/events', '/ws', '/healthz', '/registry/register/']) {
      expect(servedToAgents('POST', p, 'Bearer mws_x')).toBe(false);
    }
  });
});
