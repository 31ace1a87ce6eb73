import crypto from 'node:crypto';
import { fileURLToPath } from 'node:url';
import pino, { type Logger } from 'pino';
import { FlyProvisioner, type FlyProvisionerOptions } from '../../src/backends/flyio/index.js';
import type { RecordedRequest } from '../../src/backends/flyio/client.js';
import type { InstanceSpec } from '../../src/backends/provisioner.js';
import type { Tier } from '../../src/core/types.js';
import { startFlySim, validateRecordedRequest, type FlySim, type FlySimOptions } from '../../tools/fly-sim/index.js';

export const IMAGE = 'ghcr.io/molecule-ai/workspace-hermes:latest';
export const AGENT_TOKEN = 'flyio-test-agent-token';

export const MINI_AGENT = fileURLToPath(new URL('./fixtures/mini-agent.mjs', import.meta.url));

/**
 * A simulator as the tests use it: Fly's rate limits on (the client must stay inside them) and Fly's timing
 * windows as the simulator models them. `agent: 'mini'` boots machines with a plain-Node stand-in (fast);
 * `'real'` with the workspace agent runtime (src/agent), as the contract and end-to-end tests do.
 */
export function startSim(opts: FlySimOptions & { agent?: 'mini' | 'real' } = {}): Promise<FlySim> {
  const { agent = 'real', ...rest } = opts;
  return startFlySim({
    ...(agent === 'mini' ? { agentCommand: () => ({ command: process.execPath, args: [MINI_AGENT] }) } : {}),
    ...rest,
  });
}

export interface Subject {
  sim: FlySim;
  p: FlyProvisioner;
  app: string;
  /** Every request the provisioner's client sent, in order. */
  recorded: RecordedRequest[];
  /** Requests that are not an operation of the official spec, or whose body does not validate (strict). */
  violations: string[];
  logger: Logger;
}

let appSeq = 0;

/** A provisioner on its own app of `sim`, recording its requests. */
export function provisionerFor(sim: FlySim, opts: Partial<FlyProvisionerOptions> = {}): Subject {
  const recorded: RecordedRequest[] = [];
  const violations: string[] = [];
  const app = opts.app ?? `molecule-test-${process.pid}-${++appSeq}`;
  const logger = opts.logger ?? pino({ level: process.env.FLY_TEST_LOG ?? 'silent' });
  const p = new FlyProvisioner({
    token: sim.token,
    apiBase: sim.url,
    proxyUrl: sim.proxyUrl,
    platformId: `mp-test-${crypto.randomBytes(4).toString('hex')}`,
    watchIntervalMs: 1000,
    ...opts,
    app,
    logger,
    onRequest: (r) => {
      recorded.push(r);
      const problem = specProblem(r);
      if (problem) violations.push(problem);
      opts.onRequest?.(r);
    },
  });
  return { sim, p, app, recorded, violations, logger };
}

export function spec(overrides: Partial<InstanceSpec> & { tier?: Tier } = {}): InstanceSpec {
  const workspaceId = overrides.workspaceId ?? crypto.randomUUID();
  return {
    workspaceId,
    name: 'flyio-test',
    runtime: 'hermes',
    tier: 1,
    region: null,
    image: IMAGE,
    env: { WORKSPACE_ID: workspaceId, WORKSPACE_NAME: 'flyio-test', MOLECULE_AGENT_TOKEN: AGENT_TOKEN, MOLECULE_REGION: 'ord', PORT: '8000' },
    ...overrides,
  };
}

/** Live (not destroyed) simulator machines carrying this workspace id. */
export function machinesOf(sim: FlySim, app: string, workspaceId: string) {
  return sim.machines(app).filter((m) => m.metadata.molecule_workspace_id === workspaceId && m.state !== 'destroyed' && m.state !== 'destroying');
}

export async function agentHealthy(url: string | null, headers?: Record<string, string>): Promise<boolean> {
  if (!url) return false;
  try {
    const r = await fetch(new URL('/healthz', url), { headers, signal: AbortSignal.timeout(2000) });
    return r.ok;
  } catch {
    return false;
  }
}

/** Calls the simulator's Machines API directly — as an operator with flyctl would, behind the platform's back. */
export async function flyctl(sim: FlySim, method: string, path: string, body?: unknown, headers: Record<string, string> = {}) {
  // The operator shares Fly's per-action buckets with the platform; like flyctl, wait out a 429.
  let r: Response;
  for (let attempt = 0; ; attempt++) {
    r = await fetch(sim.url + path, {
      method,
      headers: { authorization: `Bearer ${sim.token}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}), ...headers },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    if (r.status !== 429 || attempt >= 10) break;
    await new Promise((resolve) => setTimeout(resolve, 300));
  }
  const text = await r.text();
  let parsed: any = text;
  try {
    parsed = text ? JSON.parse(text) : undefined;
  } catch {
    /* not JSON */
  }
  return { status: r.status, body: parsed };
}

/**
 * Checks one request against the official Machines API spec: the operation exists and its body validates in
 * strict mode (unknown fields rejected — Fly would silently drop them). The simulator's own logs route is the one
 * exception: it is not part of Fly's API (real Fly answers it 404 and the backend says to use flyctl logs).
 */
export function specProblem(r: RecordedRequest): string | null {
  if (r.method === 'GET' && /\/machines\/[^/]+\/logs$/.test(r.path)) return null;
  const v = validateRecordedRequest(r, { strict: true });
  if (!v.operationId) return `${r.method} ${r.path}: not an operation of the spec`;
  if (!v.ok) return `${r.method} ${r.path} (${v.operationId}): ${v.error}`;
  return null;
}
