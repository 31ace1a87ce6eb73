import type { ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import type { Logger } from 'pino';
import { ProvisionError, type InstanceHandle, type InstanceSpec, type InstanceState, type LogOptions, type OwnedInstance, type Provisioner, type AdoptsInstances } from '../../core/provisioner.js';
import { exitReason } from '../shared/exit-reason.js';
import { LocalProvisioner } from '../shared/local-provisioner.js';
import { AgentFinder, KILL_WAIT_MS, signalGroup } from './agents.js';
import { detectCgroups, oomKilled, removeCgroups, type CgroupSupport } from './cgroups.js';
import { launchAgent } from './launch.js';
import { readLog } from './logfile.js';
import { InstanceFiles, type PidRecord } from './records.js';
import { instanceName, loadPlatformId } from '../naming.js';
import { freePort } from '../../util/net.js';
import { AGENT_ENV } from '../../agent/contract.js';

export { OWNER_ENV } from './agents.js';

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

/** `<dataDir>/process-owner-id`: the value of OWNER_ENV, one per data dir (the pid records' home). */
const OWNER_ID_FILE = 'process-owner-id';

/**
 * Runs each workspace's agent as a local child process on a free loopback port. Children are detached and
 * logged to a file, so they outlive a platform restart; pid records let the next platform adopt or clean them, and
 * the marker every agent carries in its environment (OWNER_ENV) finds the ones no record names.
 */
export class ProcessProvisioner extends LocalProvisioner implements Provisioner, AdoptsInstances {
  readonly name = 'process';
  private readonly files: InstanceFiles;
  private readonly cgroups: CgroupSupport;
  private readonly children = new Map<number, ChildProcess>();
  private readonly pollers = new Map<string, NodeJS.Timeout>();
  /** The value of OWNER_ENV in this platform's agents. */
  private readonly ownerId: string;
  private readonly agents: AgentFinder;

  constructor(private readonly opts: ProcessProvisionerOptions) {
    super();
    this.files = new InstanceFiles(opts.dataDir);
    this.ownerId = loadPlatformId(opts.dataDir, OWNER_ID_FILE);
    this.agents = new AgentFinder(this.ownerId);
    this.cgroups = opts.cgroups === 'off' ? { memory: false, cpu: false, version: null } : detectCgroups();
  }

  describe(): Record<string, unknown> {
    return {
      name: this.name,
      host: '127.0.0.1',
      logs_dir: this.files.logsDir,
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

  async start(spec: InstanceSpec): Promise<InstanceHandle> {
    const instanceId = instanceName(spec.workspaceId);
    // The recorded agent, and any the records lost (a platform killed between spawn and record): one agent per instance.
    await this.stop(instanceId);

    const port = await freePort();
    const child = await launchAgent({
      instanceId,
      // The agent keeps its A2A tasks here, so they survive restarts (README, "The agent runtime").
      spec: { ...spec, env: { [AGENT_ENV.stateDir]: this.stateDir(spec.workspaceId), ...spec.env } },
      port,
      logFile: this.files.logFile(instanceId),
      cwd: this.opts.dataDir,
      ownerId: this.ownerId,
      cgroups: this.cgroups,
      logger: this.opts.logger,
      command: this.opts.command,
    });
    const pid = child.pid!;
    const record: PidRecord = { instanceId, workspaceId: spec.workspaceId, pid, port, startedAt: new Date().toISOString() };
    try {
      this.files.write(record);
    } catch (e) {
      signalGroup(pid, 'SIGKILL'); // unrecorded, it would be an agent nobody knows of
      throw new ProvisionError('START_FAILED', `could not record the agent process: ${(e as Error).message}`);
    }
    this.children.set(pid, child);
    this.instances.arm(instanceId, spec.workspaceId, pid);
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
    const rec = this.files.read(instanceId);
    const targets = new Map<number, string>(); // pid → workspace id
    if (rec?.pid && this.alive(rec)) targets.set(rec.pid, rec.workspaceId);
    for (const a of this.agents.scan()) if (a.instanceId === instanceId && !targets.has(a.pid)) targets.set(a.pid, a.workspaceId);
    if (targets.size) {
      // Only the agent we stop: one that died before we looked has an exit still to report.
      const stopping = rec?.pid && targets.has(rec.pid) ? rec : undefined;
      if (stopping) this.instances.disarm(instanceId);
      const stuck = await this.agents.terminate(targets, this.children, this.opts.stopGraceMs ?? 5000);
      if (stuck.length) {
        // The stop failed: whenever the agent does die, that is news again.
        if (stopping?.pid && stuck.includes(stopping.pid)) this.instances.arm(instanceId, stopping.workspaceId, stopping.pid);
        throw new Error(`agent process ${stuck.join(', ')} of ${instanceId} is still there ${KILL_WAIT_MS} ms after SIGKILL`);
      }
    }
    this.stopPolling(instanceId);
    const now = this.files.read(instanceId);
    if (now?.pid && targets.has(now.pid)) this.files.write({ ...now, pid: null });
  }

  async destroy(instanceId: string): Promise<void> {
    const workspaceId = this.files.read(instanceId)?.workspaceId;
    await this.stop(instanceId);
    removeCgroups(this.cgroups, instanceId);
    this.files.remove(instanceId);
    if (workspaceId) fs.rmSync(this.stateDir(workspaceId), { recursive: true, force: true });
  }

  /** `<dataDir>/state/<workspace id>`: the workspace's state directory, kept across restarts, removed on destroy. */
  private stateDir(workspaceId: string): string {
    return path.join(path.resolve(this.opts.dataDir), 'state', workspaceId.replace(/[^A-Za-z0-9._-]/g, '_'));
  }

  async inspect(instanceId: string): Promise<InstanceState> {
    const rec = this.files.read(instanceId);
    if (!rec) return { state: 'gone', reason: 'no process record' };
    if (rec.pid && this.alive(rec)) return { state: 'running' };
    if (rec.pid) {
      // Died while nobody was watching (e.g. while the platform was down).
      this.files.write({ ...rec, pid: null, lastExit: rec.lastExit ?? { code: null, signal: null, at: new Date().toISOString(), oom: false } });
      return { state: 'failed', reason: `process ${rec.pid} is no longer running` };
    }
    if (rec.lastExit) return { state: rec.lastExit.code === 0 ? 'stopped' : 'failed', reason: processExitReason(rec.lastExit), exitCode: rec.lastExit.code };
    return { state: 'stopped' };
  }

  /** Every instance with a pid record, and every agent of this platform (by its marker) that no record names. */
  async list(): Promise<OwnedInstance[]> {
    const out: OwnedInstance[] = [];
    for (const id of this.files.recorded()) {
      const rec = this.files.read(id);
      if (!rec) continue;
      out.push({ instanceId: rec.instanceId, workspaceId: rec.workspaceId, state: (await this.inspect(rec.instanceId)).state });
    }
    const listed = new Set(out.map((o) => o.instanceId));
    for (const a of this.agents.scan()) {
      if (listed.has(a.instanceId)) continue;
      listed.add(a.instanceId);
      out.push({ instanceId: a.instanceId, workspaceId: a.workspaceId, state: 'running' });
    }
    return out;
  }

  logs(instanceId: string, opts: LogOptions): AsyncIterable<string> {
    return readLog(this.files.logFile(instanceId), opts);
  }

  /** Processes started by an earlier platform are not our children: no exit event comes, so poll them. */
  async adopt(handles: { workspaceId: string; instanceId: string }[]): Promise<void> {
    for (const h of handles) {
      const rec = this.files.read(h.instanceId);
      if (!rec?.pid || this.children.has(rec.pid) || this.pollers.has(rec.instanceId)) continue;
      if (!this.alive(rec)) continue; // inspect() reports it; the core decides what to do.
      this.opts.logger.info({ instanceId: rec.instanceId, pid: rec.pid }, 'adopted running agent process');
      const pid = rec.pid;
      this.instances.arm(rec.instanceId, rec.workspaceId, pid);
      const timer = setInterval(() => {
        const cur = this.files.read(rec.instanceId);
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

  /** Records every exit, ours or not, so inspect() and the log can say how the agent ended. */
  private onExit(instanceId: string, pid: number, code: number | null, signal: NodeJS.Signals | null): void {
    const rec = this.files.read(instanceId);
    if (!rec || rec.pid !== pid) return; // a newer instance took its place
    const oom = signal === 'SIGKILL' && oomKilled(this.cgroups, instanceId);
    const lastExit = { code, signal, at: new Date().toISOString(), oom };
    this.files.write({ ...rec, pid: null, lastExit });
    const reason = processExitReason(lastExit);
    this.files.appendLog(instanceId, `[molecule] ${lastExit.at} agent process ${pid} ${reason}`);
    this.instances.report(instanceId, pid, { state: code === 0 ? 'stopped' : 'failed', reason, exitCode: code });
  }

  private stopPolling(instanceId: string): void {
    const t = this.pollers.get(instanceId);
    if (t) clearInterval(t);
    this.pollers.delete(instanceId);
  }

  /** Alive and still ours: the pid could have been reused by an unrelated process after a reboot. */
  private alive(rec: PidRecord): boolean {
    return !!rec.pid && this.agents.isAgent(rec.pid, rec.workspaceId);
  }

  private handle(rec: PidRecord): InstanceHandle {
    return {
      instanceId: rec.instanceId,
      url: `http://127.0.0.1:${rec.port}`,
      details: { pid: rec.pid, port: rec.port, started_at: rec.startedAt },
    };
  }
}

/** A null status from a record means the exit was never seen: the agent died while no platform was watching. */
function processExitReason(e: NonNullable<PidRecord['lastExit']>): string {
  return exitReason({ code: e.code, signal: e.signal ?? null, oom: e.oom, unknown: 'exited (status unknown: it died while the platform was not watching)' });
}
