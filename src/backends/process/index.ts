import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { once } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from 'pino';
import { agentCommand } from '../../agent/launch.js';
import { TIERS } from '../../core/types.js';
import {
  ProvisionError,
  type InstanceEvent,
  type InstanceHandle,
  type InstanceSpec,
  type InstanceState,
  type LogOptions,
  type OwnedInstance,
  type Provisioner,
} from '../provisioner.js';
import { createCgroups, detectCgroups, oomKilled, removeCgroups, type CgroupSupport } from './cgroups.js';
import { readLog } from './logfile.js';
import { instanceName, loadPlatformId } from '../naming.js';
import { freePort } from '../../util/net.js';

/** What survives a platform restart: enough to find, check and stop the child again. */
interface PidRecord {
  instanceId: string;
  workspaceId: string;
  pid: number | null;
  port: number;
  startedAt: string;
  lastExit?: { code: number | null; signal: string | null; at: string; oom: boolean };
}

export interface ProcessProvisionerOptions {
  dataDir: string;
  logger: Logger;
  /** Command that runs the agent; defaults to the built-in agent under tsx. */
  command?: (heapMb: number) => { command: string; args: string[] };
  /** 'auto' uses cgroups where writable; 'off' never does. */
  cgroups?: 'auto' | 'off';
  /** How long stop() waits after SIGTERM before SIGKILL. */
  stopGraceMs?: number;
  /** How often adopted (not our child) processes are checked. */
  pollMs?: number;
}

/** Host environment a child may see; everything else comes from the spec. */
const PASS_ENV = ['PATH', 'HOME', 'LANG', 'LC_ALL', 'TZ', 'TMPDIR', 'SSL_CERT_FILE', 'NODE_EXTRA_CA_CERTS'];

/**
 * Every agent carries this platform's process-backend id in its environment (what labels are to Docker): a platform
 * finds its agents by it in /proc, also the ones no pid record names (killed between spawn and record).
 */
export const OWNER_ENV = 'MOLECULE_PROCESS_OWNER';
/** `<dataDir>/process-owner-id`: the value of OWNER_ENV, one per data dir (the pid records' home). */
const OWNER_ID_FILE = 'process-owner-id';
/** How long stop() waits for a process to go after SIGKILL before it gives up (a process stuck in the kernel). */
const KILL_WAIT_MS = 5000;

/** One agent process of this platform, found by its marker. */
interface FoundAgent {
  pid: number;
  workspaceId: string;
  instanceId: string;
}

/**
 * Runs each workspace's agent as a local child process on a free loopback port. Children are detached and
 * logged to a file, so they outlive a platform restart; pid records let the next platform adopt or clean them, and
 * the marker every agent carries in its environment (OWNER_ENV) finds the ones no record names.
 */
export class ProcessProvisioner implements Provisioner {
  readonly name = 'process';
  readonly defaultRegion = 'local';
  private readonly recordsDir: string;
  private readonly logsDir: string;
  private readonly cgroups: CgroupSupport;
  private readonly listeners = new Set<(ev: InstanceEvent) => void>();
  /** Pids we stopped on purpose: their exit is not news. */
  private readonly expectedExits = new Set<number>();
  private readonly children = new Map<number, ChildProcess>();
  private readonly pollers = new Map<string, NodeJS.Timeout>();
  /** The value of OWNER_ENV in this platform's agents. */
  private readonly ownerId: string;

  constructor(private readonly opts: ProcessProvisionerOptions) {
    this.recordsDir = path.join(opts.dataDir, 'process');
    this.logsDir = path.join(opts.dataDir, 'logs');
    fs.mkdirSync(this.recordsDir, { recursive: true });
    fs.mkdirSync(this.logsDir, { recursive: true });
    this.ownerId = loadPlatformId(opts.dataDir, OWNER_ID_FILE);
    this.cgroups = opts.cgroups === 'off' ? { memory: false, cpu: false, version: null } : detectCgroups();
  }

  describe(): Record<string, unknown> {
    return {
      name: this.name,
      host: '127.0.0.1',
      logs_dir: this.logsDir,
      limits: {
        heap: true,
        memory: this.cgroups.memory ? `cgroup v${this.cgroups.version}` : false,
        cpu: this.cgroups.cpu ? `cgroup v${this.cgroups.version}` : false,
        read_only_root: false,
        note: this.cgroups.memory
          ? 'tier memory and CPU are enforced by cgroups; heap is capped at 75% of tier memory'
          : 'cgroups are not writable here: only the V8 heap cap (75% of tier memory) is enforced',
      },
    };
  }

  watch(listener: (ev: InstanceEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  async start(spec: InstanceSpec): Promise<InstanceHandle> {
    const instanceId = instanceName(spec.workspaceId);
    // The recorded agent, and any the records lost (a platform killed between spawn and record): one agent per instance.
    await this.stop(instanceId);

    const port = await freePort();
    const { memoryMb, cpus } = TIERS[spec.tier];
    const heapMb = Math.floor(memoryMb * 0.75);
    const cmd = (this.opts.command ?? ((h) => agentCommand({ heapMb: h })))(heapMb);
    const logFile = this.logFile(instanceId);
    const out = fs.openSync(logFile, 'a');
    fs.writeSync(out, `[molecule] ${new Date().toISOString()} starting ${spec.runtime} agent on 127.0.0.1:${port} (tier ${spec.tier})\n`);

    let command = cmd.command;
    let args = cmd.args;
    let procsFiles: string[] = [];
    try {
      procsFiles = createCgroups(this.cgroups, instanceId, memoryMb, cpus);
    } catch (e) {
      this.opts.logger.warn({ err: (e as Error).message, instanceId }, 'could not create cgroups; starting without them');
    }
    if (procsFiles.length) {
      // Join the cgroups before exec, so the limits hold from the agent's first instruction.
      const joins = procsFiles.map((_, i) => `echo $$ > "$${i + 1}"`).join(' && ');
      args = ['-c', `${joins} && shift ${procsFiles.length} && exec "$@"`, 'molecule-cgroup-join', ...procsFiles, command, ...args];
      command = '/bin/sh';
    }

    const env: Record<string, string> = {};
    for (const k of PASS_ENV) if (process.env[k]) env[k] = process.env[k]!;
    Object.assign(env, spec.env, { PORT: String(port), AGENT_HOST: '127.0.0.1', [OWNER_ENV]: this.ownerId });

    const child = spawn(command, args, { env, stdio: ['ignore', out, out], detached: true, cwd: this.opts.dataDir });
    fs.closeSync(out);
    try {
      await Promise.race([once(child, 'spawn'), once(child, 'error').then(([e]) => Promise.reject(e))]);
    } catch (e) {
      throw new ProvisionError('START_FAILED', `could not start the agent process: ${(e as Error).message}`);
    }
    child.unref();
    const pid = child.pid!;
    const record: PidRecord = { instanceId, workspaceId: spec.workspaceId, pid, port, startedAt: new Date().toISOString() };
    try {
      this.writeRecord(record);
    } catch (e) {
      signalGroup(pid, 'SIGKILL'); // unrecorded, it would be an agent nobody knows of
      throw new ProvisionError('START_FAILED', `could not record the agent process: ${(e as Error).message}`);
    }
    this.children.set(pid, child);
    child.on('exit', (code, signal) => {
      this.children.delete(pid);
      this.onExit(instanceId, pid, code, signal);
    });
    return this.handle(record);
  }

  /**
   * Stops the recorded agent and any other agent of this instance the records lost. Bounded: SIGTERM, then SIGKILL
   * after the grace period, then at most KILL_WAIT_MS more; a process still there after that is an error.
   */
  async stop(instanceId: string): Promise<void> {
    const rec = this.readRecord(instanceId);
    const targets = new Map<number, string>(); // pid → workspace id
    if (rec?.pid && this.alive(rec)) targets.set(rec.pid, rec.workspaceId);
    for (const a of this.scan()) if (a.instanceId === instanceId && !targets.has(a.pid)) targets.set(a.pid, a.workspaceId);
    if (targets.size) {
      const gone = new Map<number, () => boolean>();
      for (const [pid, workspaceId] of targets) {
        this.expectedExits.add(pid);
        // Our own child is gone only once reaped (its 'exit' event); until then it is a zombie that kill(0) still sees.
        const child = this.children.get(pid);
        let reaped = !child;
        child?.once('exit', () => (reaped = true));
        gone.set(pid, () => (child ? reaped : !this.isAgent(pid, workspaceId)));
      }
      const left = () => [...gone].filter(([, g]) => !g()).map(([pid]) => pid);
      const waitUntil = async (deadline: number) => {
        while (Date.now() < deadline && left().length) await sleep(20);
      };
      for (const pid of targets.keys()) {
        signalGroup(pid, 'SIGTERM');
        signalGroup(pid, 'SIGCONT'); // a stopped (frozen) process must wake to handle SIGTERM
      }
      await waitUntil(Date.now() + (this.opts.stopGraceMs ?? 5000));
      for (const pid of left()) signalGroup(pid, 'SIGKILL');
      await waitUntil(Date.now() + KILL_WAIT_MS);
      const stuck = left();
      // A reaped child's exit consumed its entry already; nobody reports the others' exits (stray, polling stopped).
      for (const pid of targets.keys()) this.expectedExits.delete(pid);
      if (stuck.length) {
        throw new Error(`agent process ${stuck.join(', ')} of ${instanceId} is still there ${KILL_WAIT_MS} ms after SIGKILL`);
      }
    }
    this.stopPolling(instanceId);
    const now = this.readRecord(instanceId);
    if (now?.pid && targets.has(now.pid)) this.writeRecord({ ...now, pid: null });
  }

  async resume(_instanceId: string, spec: InstanceSpec): Promise<InstanceHandle> {
    return this.start(spec);
  }

  async restart(_instanceId: string | null, spec: InstanceSpec): Promise<InstanceHandle> {
    return this.start(spec);
  }

  async destroy(instanceId: string): Promise<void> {
    await this.stop(instanceId);
    removeCgroups(this.cgroups, instanceId);
    fs.rmSync(this.recordFile(instanceId), { force: true });
    fs.rmSync(this.logFile(instanceId), { force: true });
  }

  async inspect(instanceId: string): Promise<InstanceState> {
    const rec = this.readRecord(instanceId);
    if (!rec) return { state: 'gone', reason: 'no process record' };
    if (rec.pid && this.alive(rec)) return { state: 'running' };
    if (rec.pid) {
      // Died while nobody was watching (e.g. while the platform was down).
      this.writeRecord({ ...rec, pid: null, lastExit: rec.lastExit ?? { code: null, signal: null, at: new Date().toISOString(), oom: false } });
      return { state: 'failed', reason: `process ${rec.pid} is no longer running` };
    }
    if (rec.lastExit) return { state: rec.lastExit.code === 0 ? 'stopped' : 'failed', reason: exitReason(rec.lastExit), exitCode: rec.lastExit.code };
    return { state: 'stopped' };
  }

  /** Every instance with a pid record, and every agent of this platform (by its marker) that no record names. */
  async list(): Promise<OwnedInstance[]> {
    const out: OwnedInstance[] = [];
    for (const f of fs.readdirSync(this.recordsDir)) {
      if (!f.endsWith('.json')) continue;
      const rec = this.readRecord(f.slice(0, -5));
      if (!rec) continue;
      out.push({ instanceId: rec.instanceId, workspaceId: rec.workspaceId, state: (await this.inspect(rec.instanceId)).state });
    }
    const listed = new Set(out.map((o) => o.instanceId));
    for (const a of this.scan()) {
      if (listed.has(a.instanceId)) continue;
      listed.add(a.instanceId);
      out.push({ instanceId: a.instanceId, workspaceId: a.workspaceId, state: 'running' });
    }
    return out;
  }

  logs(instanceId: string, opts: LogOptions): AsyncIterable<string> {
    return readLog(this.logFile(instanceId), opts);
  }

  /** Watches processes started by an earlier platform: they are not our children, so poll them. */
  async adopt(handles: { workspaceId: string; instanceId: string }[]): Promise<void> {
    for (const h of handles) {
      const rec = this.readRecord(h.instanceId);
      if (!rec?.pid || this.children.has(rec.pid) || this.pollers.has(rec.instanceId)) continue;
      if (!this.alive(rec)) continue; // inspect() reports it; the core decides what to do.
      this.opts.logger.info({ instanceId: rec.instanceId, pid: rec.pid }, 'adopted running agent process');
      const pid = rec.pid;
      const timer = setInterval(() => {
        const cur = this.readRecord(rec.instanceId);
        if (!cur || cur.pid !== pid) return this.stopPolling(rec.instanceId);
        if (!this.alive(cur)) {
          this.stopPolling(rec.instanceId);
          this.onExit(rec.instanceId, pid, null, null);
        }
      }, this.opts.pollMs ?? 1000);
      timer.unref();
      this.pollers.set(rec.instanceId, timer);
    }
  }

  async close(): Promise<void> {
    for (const id of [...this.pollers.keys()]) this.stopPolling(id);
    for (const child of this.children.values()) child.removeAllListeners('exit');
    this.children.clear();
  }

  private onExit(instanceId: string, pid: number, code: number | null, signal: NodeJS.Signals | null): void {
    const expected = this.expectedExits.delete(pid);
    const rec = this.readRecord(instanceId);
    if (!rec || rec.pid !== pid) return; // a newer instance took its place
    const oom = signal === 'SIGKILL' && oomKilled(this.cgroups, instanceId);
    const lastExit = { code, signal, at: new Date().toISOString(), oom };
    this.writeRecord({ ...rec, pid: null, lastExit });
    this.appendLog(instanceId, `[molecule] ${lastExit.at} agent process ${pid} ${exitReason(lastExit)}`);
    if (expected) return;
    const ev: InstanceEvent = {
      workspaceId: rec.workspaceId,
      instanceId,
      state: code === 0 ? 'stopped' : 'failed',
      reason: exitReason(lastExit),
      exitCode: code,
    };
    for (const l of this.listeners) l(ev);
  }

  private stopPolling(instanceId: string): void {
    const t = this.pollers.get(instanceId);
    if (t) clearInterval(t);
    this.pollers.delete(instanceId);
  }

  /** Alive and still ours: the pid could have been reused by an unrelated process after a reboot. */
  private alive(rec: PidRecord): boolean {
    return !!rec.pid && this.isAgent(rec.pid, rec.workspaceId);
  }

  /**
   * Whether pid is a live agent of this platform for the workspace. A pid we may not signal (EPERM) belongs to
   * another user, and our agents run as our user: not ours. Otherwise its environment decides: the workspace's id,
   * and this platform's marker (absent only in agents started before there was one).
   */
  private isAgent(pid: number, workspaceId: string): boolean {
    try {
      process.kill(pid, 0);
    } catch {
      return false; // ESRCH: gone; EPERM: someone else's process
    }
    if (process.platform !== 'linux') return true; // no /proc to tell: trust the record
    const env = readEnviron(pid);
    // A zombie has an empty environ; a reused pid has someone else's.
    if (!env || env.get('WORKSPACE_ID') !== workspaceId) return false;
    const owner = env.get(OWNER_ENV);
    return owner === undefined || owner === this.ownerId;
  }

  /**
   * This platform's agents, found by the marker in their environment rather than by the pid records. Only process
   * group leaders count: agents are (they are spawned detached); what an agent runs inherits its environment but not
   * its leadership, and goes with its group.
   */
  private scan(): FoundAgent[] {
    if (process.platform !== 'linux') return [];
    const marker = `${OWNER_ENV}=${this.ownerId}\0`;
    const found: FoundAgent[] = [];
    let entries: string[];
    try {
      entries = fs.readdirSync('/proc');
    } catch {
      return [];
    }
    for (const entry of entries) {
      if (!/^\d+$/.test(entry)) continue;
      const pid = Number(entry);
      if (pid === process.pid) continue;
      let raw: string;
      try {
        raw = fs.readFileSync(`/proc/${pid}/environ`, 'latin1');
      } catch {
        continue; // gone meanwhile, or another user's
      }
      if (!raw.includes(marker)) continue; // cheap test first; exact below
      const env = parseEnviron(raw);
      const workspaceId = env.get('WORKSPACE_ID');
      if (env.get(OWNER_ENV) !== this.ownerId || !workspaceId || groupOf(pid) !== pid) continue;
      if (this.isAgent(pid, workspaceId)) found.push({ pid, workspaceId, instanceId: instanceName(workspaceId) });
    }
    return found;
  }

  private handle(rec: PidRecord): InstanceHandle {
    return {
      instanceId: rec.instanceId,
      url: `http://127.0.0.1:${rec.port}`,
      details: { pid: rec.pid, port: rec.port, started_at: rec.startedAt },
    };
  }

  private recordFile(instanceId: string) {
    return path.join(this.recordsDir, `${instanceId}.json`);
  }
  private logFile(instanceId: string) {
    return path.join(this.logsDir, `${instanceId}.log`);
  }
  private readRecord(instanceId: string): PidRecord | undefined {
    try {
      return JSON.parse(fs.readFileSync(this.recordFile(instanceId), 'utf8')) as PidRecord;
    } catch {
      return undefined;
    }
  }
  private writeRecord(rec: PidRecord): void {
    const file = this.recordFile(rec.instanceId);
    fs.writeFileSync(`${file}.tmp`, JSON.stringify(rec));
    fs.renameSync(`${file}.tmp`, file);
  }
  private appendLog(instanceId: string, line: string): void {
    try {
      fs.appendFileSync(this.logFile(instanceId), `${line}\n`);
    } catch {
      /* log dir gone (destroyed) */
    }
  }
}

function exitReason(e: { code: number | null; signal: string | null; oom: boolean }): string {
  if (e.oom) return `killed: out of memory (OOM) at the tier's memory limit`;
  if (e.signal) return `killed by ${e.signal}`;
  if (e.code === null) return 'exited (status unknown: it died while the platform was not watching)';
  return `exited with code ${e.code}`;
}

function parseEnviron(raw: string): Map<string, string> {
  const env = new Map<string, string>();
  for (const kv of raw.split('\0')) {
    const eq = kv.indexOf('=');
    if (eq > 0 && !env.has(kv.slice(0, eq))) env.set(kv.slice(0, eq), kv.slice(eq + 1));
  }
  return env;
}

/** A process's environment as it was exec'd (Linux), or undefined when it cannot be read (gone, or not ours). */
function readEnviron(pid: number): Map<string, string> | undefined {
  try {
    return parseEnviron(fs.readFileSync(`/proc/${pid}/environ`, 'latin1'));
  } catch {
    return undefined;
  }
}

/** The process group of pid, from /proc/<pid>/stat (the fields after the command name, which may hold spaces). */
function groupOf(pid: number): number | undefined {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'latin1');
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[2]);
  } catch {
    return undefined;
  }
}

/** Children are process-group leaders (detached), so signal the group: the cgroup shell wrapper execs, but be sure. */
function signalGroup(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(-pid, sig);
  } catch {
    try {
      process.kill(pid, sig);
    } catch {
      /* already gone */
    }
  }
}
