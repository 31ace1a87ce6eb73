import type { AgentConfig } from '../../../src/agent/config.js';

export const AGENT_TOKEN = 'agent-token-for-tests-7f3a';
export const WORKSPACE_TOKEN = 'workspace-token-for-tests-91c2';

export function testConfig(overrides: Partial<AgentConfig> = {}): AgentConfig {
  return {
    workspace: { id: 'ws-test-1', name: 'alpha', role: 'Research assistant', region: 'ord', tier: 2, runtime: 'hermes' },
    port: 0,
    host: '127.0.0.1',
    agentToken: AGENT_TOKEN,
    platform: null,
    heartbeatIntervalS: 0.05,
    model: null,
    logLevel: 'debug',
    warnings: [],
    ...overrides,
  };
}

export interface RpcOptions {
  token?: string | null;
  headers?: Record<string, string>;
}

/** POSTs a JSON-RPC body (object or raw string) to the agent and returns status + parsed JSON. */
export async function rpc(url: string, body: unknown, opts: RpcOptions = {}): Promise<{ status: number; json: any }> {
  const res = await rpcRaw(url, body, opts);
  return { status: res.status, json: await res.json() };
}

export function rpcRaw(url: string, body: unknown, opts: RpcOptions = {}): Promise<Response> {
  const token = opts.token === undefined ? AGENT_TOKEN : opts.token;
  return fetch(`${url}/`, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      ...(token ? { authorization: `Bearer ${token}` } : {}),
      ...opts.headers,
    },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
}

let seq = 0;
/** A v0.3 message/send (or /stream) body with the seed's shape. */
export function legacySend(text: string, extra: { method?: string; contextId?: string; id?: string | number } = {}) {
  return {
    jsonrpc: '2.0',
    id: extra.id ?? `req-${++seq}`,
    method: extra.method ?? 'message/send',
    params: {
      message: {
        kind: 'message',
        role: 'user',
        messageId: `m-${seq}-${Math.random().toString(36).slice(2)}`,
        parts: [{ kind: 'text', text }],
        ...(extra.contextId ? { contextId: extra.contextId } : {}),
      },
    },
  };
}

/** Concatenated text of the artifact-update events of a v0.3 stream. */
export function streamedText(events: Array<Record<string, any>>): string {
  return events
    .map((e) => e.result)
    .filter((r) => r?.kind === 'artifact-update')
    .flatMap((r) => r.artifact.parts)
    .map((p: any) => p.text ?? '')
    .join('');
}
