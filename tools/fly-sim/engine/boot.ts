/**
 * Booting a machine for real: image → local command → child process with Fly's in-machine env, and the
 * restart policy when that process exits by itself.
 */
import { agentCommand as defaultAgentCommand } from '../../../src/agent/launch.js';
import { freePort } from '../../../src/util/net.js';
import { MachineProcess, waitForPort, type BootCommand, type ExitInfo, type MainProcess } from '../runner.js';
import { clockSleep, imageRefString, parseImageRef } from '../util.js';
import { startChecks, stopChecks } from './checks.js';
import { exitEvent, finishStopped } from './lifecycle.js';
import { secretEnv } from './secrets.js';
import type { EngineState } from './state.js';
import type { BootContext, Json, MachineEvent, MachineRecord } from './types.js';

function resolveImage(e: EngineState, m: MachineRecord): { kind: 'run'; cmd: BootCommand; agent?: boolean } | { kind: 'unpullable'; reason: string } {
  const image: string = m.config.image;
  const ref = parseImageRef(image);
  const repoLast = ref.repository.split('/').pop() ?? '';
  if (repoLast === 'unpullable') return { kind: 'unpullable', reason: 'manifest unknown (the /unpullable sentinel image)' };
  if (e.faults.isUnpullable(image, ref.repository)) return { kind: 'unpullable', reason: 'manifest unknown (injected unpullable_image fault)' };
  const noTag = image.replace(/@.*$/, '').replace(/:[^/:]+$/, '');
  const mapping = e.opts.images?.[image] ?? e.opts.images?.[noTag] ?? e.opts.images?.[ref.repository];
  const ctx: BootContext = { app: m.app, machineId: m.id, image, imageRef: ref, memoryMb: m.config.guest.memory_mb, config: m.config };
  const agent = (): BootCommand => (e.opts.agentCommand ?? defaultAgentCommand)({ heapMb: m.config.guest.memory_mb });
  if (mapping !== undefined) {
    if (mapping === 'agent') return { kind: 'run', cmd: agent(), agent: true };
    return { kind: 'run', cmd: typeof mapping === 'function' ? mapping(ctx) : mapping };
  }
  const pattern = e.opts.agentImagePattern ?? /(^|\/)workspace-[a-z0-9][a-z0-9._-]*$/;
  if (pattern.test(ref.repository)) return { kind: 'run', cmd: agent(), agent: true };
  return {
    kind: 'unpullable',
    reason: 'not found (fly-sim runs only images it maps to a local command: `…/workspace-<runtime>` or the images option)',
  };
}

function machineEnv(m: MachineRecord, cmd: BootCommand, hostPort: number, secretEnv: Record<string, string>, home: string): Record<string, string> {
  const ref = parseImageRef(m.config.image);
  const env: Record<string, string> = {
    PATH: process.env.PATH ?? '/usr/local/bin:/usr/bin:/bin',
    HOME: home,
    ...(cmd.env ?? {}),
    ...(m.config.env ?? {}),
    ...secretEnv,
    FLY_APP_NAME: m.app,
    FLY_MACHINE_ID: m.id,
    FLY_ALLOC_ID: m.id,
    FLY_REGION: m.region,
    FLY_PRIVATE_IP: m.privateIp,
    FLY_IMAGE_REF: imageRefString(ref),
    FLY_MACHINE_VERSION: m.version,
    FLY_VM_MEMORY_MB: String(m.config.guest.memory_mb),
    FLY_PROCESS_GROUP: 'app',
    HOSTNAME: m.id,
    // Every machine shares this host, so the internal port is mapped to a free local port.
    PORT: String(hostPort),
    AGENT_HOST: '127.0.0.1',
  };
  return env;
}

function needsPort(cfg: Json): boolean {
  return (Array.isArray(cfg.services) && cfg.services.length > 0) || (cfg.checks && Object.keys(cfg.checks).length > 0);
}

/** The reason goes to the machine's log and to the event, where `flyctl machine status` would show it. */
function failLaunch(e: EngineState, m: MachineRecord, error: string): void {
  e.log(m, 'sim', error);
  e.transition(m, 'failed', 'launch', 'flyd', { error });
}

/** starting → (process) → started; or → failed for an unpullable image. Resumes a suspended process. */
export async function boot(e: EngineState, m: MachineRecord, source: MachineEvent['source'], opts: { emitStarting?: boolean } = {}): Promise<void> {
  const epoch = ++m.epoch;
  m.launchPending = false;
  if (opts.emitStarting !== false) e.transition(m, 'starting', 'start', source);
  if (m.proc?.alive && m.proc.suspended) {
    m.proc.resume();
    e.log(m, 'sim', 'resumed from suspend (SIGCONT)');
    e.transition(m, 'started', 'start', 'flyd');
    startChecks(e, m, epoch);
    return;
  }
  if (m.proc?.alive) await m.proc.kill(); // a stale process (should not happen); never run two
  await clockSleep(e.clock, e.timing.slowBootMs);
  if (m.epoch !== epoch || e.closed) return;
  const resolved = resolveImage(e, m);
  if (resolved.kind === 'unpullable') {
    return failLaunch(e, m, `failed to pull image ${m.config.image}: ${resolved.reason}`);
  }
  // Secrets are read at boot: a change reaches a machine only when it boots again.
  const secrets = secretEnv(e, m);
  if ('error' in secrets) {
    return failLaunch(e, m, `failed to set up the machine's secrets: ${secrets.error}`);
  }
  if (resolved.agent && e.opts.light) return bootLight(e, m, epoch, resolved.cmd, secrets.env);
  const hostPort = await freePort();
  if (m.epoch !== epoch || e.closed) return;
  const env = machineEnv(m, resolved.cmd, hostPort, secrets.env, e.diskOf(m));
  const proc = new MachineProcess(resolved.cmd, env, e.clock, (stream, line) => e.log(m, stream, line));
  m.proc = proc;
  m.hostPort = hostPort;
  void proc.exited.then((info) => onExit(e, m, proc, info));
  const ok = await proc.spawned;
  if (!ok) {
    if (m.proc === proc) m.proc = undefined;
    if (m.epoch !== epoch) return;
    return failLaunch(e, m, `failed to start the main process (${resolved.cmd.command}): ${proc.spawnError?.message ?? 'spawn failed'}`);
  }
  e.log(m, 'sim', `main process pid ${proc.pid}; internal port ${m.internalPort} → 127.0.0.1:${hostPort}`);
  if (m.epoch !== epoch) return;
  if (needsPort(m.config)) {
    const r = await waitForPort(hostPort, proc, e.timing.portTimeoutMs, () => m.epoch !== epoch || e.closed);
    if (r === 'cancelled' || r === 'exited') return;
    if (r === 'timeout') e.log(m, 'sim', `port ${m.internalPort} (local ${hostPort}) still closed after ${e.timing.portTimeoutMs} ms; reporting started anyway`);
  }
  if (m.epoch !== epoch || !proc.alive) return;
  e.transition(m, 'started', 'start', 'flyd');
  startChecks(e, m, epoch);
}

/**
 * A light agent: the agent inside the simulator (light.ts), with the environment a child would get — PORT is the
 * internal port, since nothing listens; the proxy hands requests to it in memory. Started as soon as it exists.
 */
async function bootLight(e: EngineState, m: MachineRecord, epoch: number, cmd: BootCommand, secrets: Record<string, string>): Promise<void> {
  const host = await e.lightHost();
  if (m.epoch !== epoch || e.closed) return;
  const { LightProcess } = await import('../light.js');
  const env = machineEnv(m, cmd, m.internalPort, secrets, `/home/${m.id}`);
  const proc = new LightProcess(host, env, e.clock, (stream, line) => e.log(m, stream, line));
  m.proc = proc;
  m.hostPort = undefined;
  void proc.exited.then((info) => onExit(e, m, proc, info));
  e.log(m, 'sim', `light agent (in the simulator process); internal port ${m.internalPort} answered in memory`);
  if (!proc.alive) return;
  e.transition(m, 'started', 'start', 'flyd');
  startChecks(e, m, epoch);
}

function onExit(e: EngineState, m: MachineRecord, proc: MainProcess, info: ExitInfo): void {
  if (proc.spawnError) return;
  if (m.proc !== proc) return;
  m.proc = undefined;
  m.lastExit = info;
  e.log(
    m,
    'sim',
    `main process exited with code ${info.exitCode}${info.signal ? ` (signal ${info.signal})` : ''}${info.oomKilled ? ', out of memory' : ''}`,
  );
  if (info.requestedStop || e.closed) return; // the operation that asked for it moves the state
  if (!['started', 'starting'].includes(m.state)) return;
  const epoch = ++m.epoch;
  stopChecks(e, m);
  const policy: string = m.config.restart?.policy ?? 'on-failure';
  const maxRetries: number = m.config.restart?.max_retries ?? 10;
  const now = e.clock.now();
  m.failureTimes = m.failureTimes.filter((t) => now - t < 5 * 60_000);
  let restart = false;
  if (policy === 'always') restart = true;
  else if (policy === 'on-failure' && info.exitCode !== 0) restart = m.failureTimes.length < maxRetries;
  if (restart) {
    if (info.exitCode !== 0) m.failureTimes.push(now);
    m.restarts++;
    e.transition(m, 'starting', 'exit', 'flyd', { exit_event: exitEvent(info, true) });
    e.after(e.timing.restartBackoffMs, () => {
      if (m.epoch === epoch) void boot(e, m, 'flyd', { emitStarting: false });
    });
  } else {
    finishStopped(e, m, info);
  }
}
