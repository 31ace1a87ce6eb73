import pino from 'pino';
import { loadConfig, type Config } from '../../src/core/config.js';
import { Sealer } from '../../src/core/crypto.js';
import { EventBus, type EventFeed } from '../../src/core/events.js';
import { createLifecycle } from '../../src/core/lifecycle.js';
import { openStore, type Store } from '../../src/store/db.js';
import { EventRepo, storesOf } from '../../src/store/repositories.js';
import { FakeProvisioner } from './fake-provisioner.js';

export const silentLogger = pino({ level: 'silent' });
const KEY = Buffer.alloc(32, 7).toString('base64');
const closers: Array<() => Promise<void>> = [];

/** Closes every world (and anything else registered with onCleanup) made since the last call: use in afterEach. */
export async function closeWorlds(): Promise<void> {
  for (const c of closers.splice(0).reverse()) await c();
}

export function onCleanup(fn: () => Promise<void>): void {
  closers.push(fn);
}

/**
 * The lifecycle with no platform: an in-memory SQLite store (or the one given, shared by several "replicas"), a
 * fake backend, the workspace service and a reconciler (not active until a test activates it).
 */
export async function world(timing: Partial<Config['timing']> = {}, store?: Store, opts: { feed?: (repo: EventRepo) => EventFeed } = {}) {
  const s = store ?? (await openStore({ dataDir: '', memory: true }));
  const config = loadConfig({ CONTAINER_BACKEND: 'process' });
  Object.assign(config.timing, {
    heartbeatTtlMs: 60_000,
    provisionTimeoutMs: 60_000,
    livenessIntervalMs: 20,
    restartBackoffMs: 10,
    restartBackoffMaxMs: 80,
    crashWindowMs: 60_000,
    crashLoopMax: 3,
    probeConfirmations: 2,
    ...timing,
  });
  const logger = silentLogger;
  const sealer = Sealer.load('/nonexistent', KEY);
  const stores = storesOf(s.db);
  const bus = new EventBus(stores.events, opts.feed?.(stores.events));
  const provisioner = new FakeProvisioner();
  const probe = { ok: false, calls: 0 };
  let leader = true;
  const { svc, secretService, reconciler, idle } = createLifecycle({
    config,
    stores,
    bus,
    provisioner,
    sealer,
    logger,
    platformUrl: () => 'http://platform.invalid',
    mayAct: () => leader,
    probe: async () => (probe.calls++, probe.ok),
  });
  closers.push(async () => {
    await idle.close();
    await reconciler.close();
    svc.close();
    if (!store) await s.close();
  });
  const get = async (id: string) => (await svc.find(id))!;
  const create = async (name = 'w', extra: Record<string, unknown> = {}) => (await svc.create({ name, runtime: 'hermes', tier: 2, ...extra })).workspace.id;
  /** The agent of the workspace's current instance registers, as a booted agent would. */
  const register = async (id: string) => {
    const ws = await get(id);
    const inst = provisioner.instances.get(ws.instanceId!)!;
    return svc.registry.register(inst.env.MOLECULE_WORKSPACE_TOKEN, { url: ws.instance!.url!, agent_card: { name: ws.name } });
  };
  const statuses = async (id: string) =>
    (await bus.history({ workspaceId: id })).filter((e) => e.type === 'workspace.status').map((e) => `${e.data.to}`);
  return { store: s, config, sealer, svc, secretService, reconciler, idle, provisioner, bus, probe, get, create, register, statuses, setLeader: (v: boolean) => (leader = v) };
}

/** Launched and registered: `ready`. */
export const ready = async (w: World, id: string) => {
  await w.reconciler.reconcileWorkspace(id);
  await w.register(id);
  return w.get(id);
};

export type World = Awaited<ReturnType<typeof world>>;
