import crypto from 'node:crypto';
import { fileURLToPath } from 'node:url';
import pino, { type Logger } from 'pino';
import { afterAll, afterEach, beforeAll, expect } from 'vitest';
import { FlyProvisioner, type FlyProvisionerOptions } from '../../src/backends/flyio/index.js';
import type { RecordedRequest } from '../../src/backends/flyio/client/index.js';
import type { InstanceSpec } from '../../src/core/provisioner.js';
import type { Tier } from '../../src/core/types.js';
import { instanceSpec } from '../support/instance.js';
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

export interface ClientSetup {
  /** Every request the clients sent through `onRequest`, in order; checked and emptied after each test. */
  recorded: RecordedRequest[];
  onRequest: (r: RecordedRequest) => void;
  /** A fresh app name, `<prefix>-<pid>-<n>`. */
  newApp: () => string;
}

/**
 * For a describe block of client tests: one simulator (mini agents), fresh app names, and the requests the clients
 * sent — after each test, every one an operation of the official spec with a body that validates (strict); after
 * the block the simulator is closed. `bind` receives the simulator once started.
 */
export function simForClients(appPrefix: string, bind: (sim: FlySim) => void): ClientSetup {
  let sim: FlySim | undefined;
  const recorded: RecordedRequest[] = [];
  let seq = 0;
  beforeAll(async () => {
    sim = await startSim({ agent: 'mini' });
    bind(sim);
  });
  afterAll(async () => {
    await sim?.close();
  });
  afterEach(() => {
    const problems = recorded.splice(0).map(specProblem).filter(Boolean);
    expect(problems).toEqual([]);
  });
  return { recorded, onRequest: (r) => recorded.push(r), newApp: () => `${appPrefix}-${process.pid}-${++seq}` };
}

/**
 * For a describe block: one simulator (mini agents) and a `make(opts)` that gives a provisioner on its own app of it
 * (provisionerFor). After each test, every request any of them sent is an operation of the official spec with a valid
 * body (strict); after the block, all of them and the simulator are closed. `bind` receives the simulator once started.
 */
export function simWithProvisioners(bind: (sim: FlySim) => void): (opts?: Partial<FlyProvisionerOptions>) => Subject {
  let sim: FlySim | undefined;
  const subjects: Subject[] = [];
  beforeAll(async () => {
    sim = await startSim({ agent: 'mini' });
    bind(sim);
  });
  afterEach(() => {
    expect(subjects.flatMap((s) => s.violations.splice(0))).toEqual([]);
  });
  afterAll(async () => {
    for (const s of subjects) await s.p.close();
    await sim?.close();
  });
  return (opts = {}) => {
    const s = provisionerFor(sim!, opts);
    subjects.push(s);
    return s;
  };
}

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
  const base = instanceSpec({ workspaceId: overrides.workspaceId, name: 'flyio-test', image: IMAGE, agent: { agentToken: AGENT_TOKEN, region: 'ord', port: '8000' } });
  return { ...base, ...overrides };
}

/** Live (not destroyed) simulator machines carrying this workspace id. */
export function machinesOf(sim: FlySim, app: string, workspaceId: string) {
  return sim.machines(app).filter((m) => m.metadata.molecule_workspace_id === workspaceId && m.state !== 'destroyed' && m.state !== 'destroying');
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
