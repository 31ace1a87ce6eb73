import { AgentCard } from '@a2a-js/sdk';
import { describe, expect, it } from 'vitest';
import { AgentCardStore } from '../../src/agent/card.js';
import { platformA2aUrl, platformCardUrl, publicCard, publicCardLegacy, publicCardV1, registeredVersions } from '../../src/core/public-card.js';
import { inFamily } from '../../src/core/hierarchy.js';
import { loadConfig } from '../../src/core/config.js';
import { V1_CARD_REQUIRED, v03Errors } from '../support/a2a-schema.js';

const AGENT_URL = 'http://127.0.0.1:43921/';
const WS = '0b5e8f4e-6b1a-4c1e-9a51-1f0f6a1d2c3e';
const BASE = 'https://molecule.example.com';
const A2A = `${BASE}/workspaces/${WS}/a2a`;

/** The card our agent registers (v1 ProtoJSON), from the agent's own card code. */
function agentCard(): Record<string, unknown> {
  return new AgentCardStore({ id: WS, name: 'alpha', role: 'answers questions' } as any, AGENT_URL).v1Json();
}

/** A v0.3-shaped card, as an external agent might register it. */
const legacyRegistered = {
  name: 'external',
  description: 'an outside agent',
  version: '2.1.0',
  protocolVersion: '0.3.0',
  url: 'http://10.0.0.7:9000/rpc',
  preferredTransport: 'JSONRPC',
  additionalInterfaces: [
    { url: 'http://10.0.0.7:9000/rpc', transport: 'JSONRPC' },
    { url: 'http://10.0.0.7:9001/grpc', transport: 'GRPC' },
  ],
  capabilities: { streaming: false, pushNotifications: false },
  defaultInputModes: ['text/plain'],
  defaultOutputModes: ['text/plain', 'application/json'],
  skills: [{ id: 'x', name: 'X', description: 'does x', tags: ['x'], security: [{ agentKey: [] }] }],
  securitySchemes: { agentKey: { type: 'apiKey', in: 'header', name: 'X-Agent-Key' } },
  security: [{ agentKey: [] }],
  provider: { organization: 'Ext', url: 'https://ext.example.com' },
  signatures: [{ protected: 'e30', signature: 'c2ln' }],
};

const everyString = (v: unknown): string[] =>
  typeof v === 'string' ? [v] : Array.isArray(v) ? v.flatMap(everyString) : v && typeof v === 'object' ? Object.values(v).flatMap(everyString) : [];

describe('the published agent card', () => {
  for (const adminToken of [true, false]) {
    it(`rewrites every interface of the agent's card to the platform URL (${adminToken ? 'admin token' : 'open loopback'})`, () => {
      const opts = { baseUrl: BASE, workspaceId: WS, adminToken };
      const legacy = publicCardLegacy(agentCard(), opts);
      const v1 = publicCardV1(agentCard(), opts);
      for (const card of [legacy, v1]) {
        // No trace of the agent's private address or of the agent token's scheme remains.
        expect(everyString(card).filter((s) => s.includes('43921') || s.includes('MOLECULE_AGENT_TOKEN'))).toEqual([]);
        expect(card.supportedInterfaces).toEqual([
          expect.objectContaining({ url: A2A, protocolBinding: 'JSONRPC', protocolVersion: '1.0' }),
          expect.objectContaining({ url: A2A, protocolBinding: 'JSONRPC', protocolVersion: '0.3' }),
        ]);
        expect(card).toMatchObject({ name: 'alpha', description: 'answers questions' });
      }
      // v0.3: url, preferredTransport, protocolVersion, additionalInterfaces (with the main one) — and v1 interfaces.
      expect(legacy).toMatchObject({ url: A2A, preferredTransport: 'JSONRPC', protocolVersion: '0.3.0', additionalInterfaces: [{ url: A2A, transport: 'JSONRPC' }] });
      expect(v03Errors('AgentCard', legacy)).toBe('');
      // v1.0: the proto's required fields, and the SDK reads it as ProtoJSON.
      for (const k of V1_CARD_REQUIRED) expect(v1, k).toHaveProperty(k);
      expect(v1.url).toBeUndefined();
      const parsed = AgentCard.fromJSON(v1);
      expect(parsed.supportedInterfaces.map((i) => i.url)).toEqual([A2A, A2A]);
      expect(parsed.securitySchemes.bearer?.scheme?.$case).toBe('httpAuthSecurityScheme');
      expect(parsed.capabilities?.streaming).toBe(true);

      // Security: what the platform accepts (bearer with an admin token; none needed, bearer optional, when open).
      expect(legacy.securitySchemes).toEqual({ bearer: expect.objectContaining({ type: 'http', scheme: 'bearer' }) });
      expect((legacy.securitySchemes as any).bearer.description).toMatch(adminToken ? /MOLECULE_ADMIN_TOKEN/ : /No credentials needed/);
      expect((legacy.securitySchemes as any).bearer.description).toMatch(/workspace token/);
      expect(legacy.security).toEqual(adminToken ? [{ bearer: [] }] : [{}, { bearer: [] }]);
      expect(parsed.securityRequirements.length).toBe(adminToken ? 1 : 2);
    });
  }

  it('rewrites a v0.3 card: JSON-RPC kept, other transports, signatures and the agent\'s schemes dropped', () => {
    const opts = { baseUrl: BASE, workspaceId: WS, adminToken: true };
    expect(registeredVersions(legacyRegistered)).toEqual(['0.3']);
    const legacy = publicCardLegacy(legacyRegistered, opts);
    expect(v03Errors('AgentCard', legacy)).toBe('');
    expect(everyString(legacy).filter((s) => s.includes('10.0.0.7') || s.includes('X-Agent-Key'))).toEqual([]);
    expect(legacy).toMatchObject({ url: A2A, version: '2.1.0', provider: { organization: 'Ext' }, supportedInterfaces: [{ url: A2A, protocolVersion: '0.3' }] });
    expect(legacy.signatures).toBeUndefined();
    expect((legacy.skills as any[])[0]).toEqual({ id: 'x', name: 'X', description: 'does x', tags: ['x'] });
    const v1 = publicCardV1(legacyRegistered, opts);
    for (const k of V1_CARD_REQUIRED) expect(v1, k).toHaveProperty(k);
    expect(v1.signatures).toBeUndefined();
    expect(AgentCard.fromJSON(v1).supportedInterfaces.map((i) => [i.url, i.protocolVersion])).toEqual([[A2A, '0.3']]);
  });

  it('offers 1.0 and 0.3 over JSON-RPC for a card that names no usable interface', () => {
    expect(registeredVersions({ name: 'bare' })).toEqual(['1.0', '0.3']);
    expect(registeredVersions({ supportedInterfaces: [{ url: 'x', protocolBinding: 'GRPC', protocolVersion: '1.0' }] })).toEqual(['1.0', '0.3']);
    expect(v03Errors('AgentCard', publicCardLegacy({ name: 'bare', description: 'd', version: '1' }, { baseUrl: BASE, workspaceId: WS, adminToken: false }))).toBe('');
  });

  it('negotiates the shape on A2A-Version (absent or 0.x → v0.3, 1.x → v1.0)', () => {
    const opts = { baseUrl: `${BASE}/`, workspaceId: WS, adminToken: false };
    expect(publicCard(agentCard(), opts, undefined).url).toBe(A2A);
    expect(publicCard(agentCard(), opts, '0.3').url).toBe(A2A);
    expect(publicCard(agentCard(), opts, '1.0').url).toBeUndefined();
    expect(platformA2aUrl(`${BASE}/`, WS)).toBe(A2A);
    expect(platformCardUrl(BASE, WS)).toBe(`${A2A}/.well-known/agent-card.json`);
  });

  it('reads MOLECULE_PUBLIC_URL (absolute http(s), no trailing slash kept) and defaults to the request', () => {
    expect(loadConfig({ MOLECULE_PUBLIC_URL: 'https://m.example.com/base/' } as any).publicUrl).toBe('https://m.example.com/base');
    expect(loadConfig({} as any).publicUrl).toBeNull();
    expect(() => loadConfig({ MOLECULE_PUBLIC_URL: 'not a url' } as any)).toThrow(/MOLECULE_PUBLIC_URL/);
    expect(() => loadConfig({ MOLECULE_PUBLIC_URL: 'ftp://x' } as any)).toThrow(/http/);
  });

  it('applies the A2A access rule for catalog visibility: self, parent, children, siblings', () => {
    type W = { id: string; parentId: string | null };
    const root: W = { id: 'r', parentId: null };
    const a: W = { id: 'a', parentId: 'r' };
    const b: W = { id: 'b', parentId: 'r' };
    const a1: W = { id: 'a1', parentId: 'a' };
    const other: W = { id: 'o', parentId: null };
    const o1: W = { id: 'o1', parentId: 'o' };
    const seen = (c: typeof a) => [root, a, b, a1, other, o1].filter((t) => inFamily(c, t)).map((t) => t.id);
    expect(seen(a)).toEqual(['r', 'a', 'b', 'a1']);
    expect(seen(a1)).toEqual(['a', 'a1']);
    expect(seen(root)).toEqual(['r', 'a', 'b', 'o']);
  });
});
