import type { ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { instanceName } from '../naming.js';

/**
 * Every agent carries this platform's process-backend id in its environment (what labels are to Docker): a platform
 * finds its agents by it in /proc, also the ones no pid record names (killed between spawn and record).
 */
export const OWNER_ENV = 'MOLECULE_PROCESS_OWNER';

/** How long a stop waits for a process to go after SIGKILL before it gives up (a process stuck in the kernel). */
export const KILL_WAIT_MS = 5000;

/** One agent process of this platform, found by its marker. */
export interface FoundAgent {
  pid: number;
  workspaceId: string;
  instanceId: string;
}

/** Tells this platform's agent processes from everything else on the host, by the marker in their environment. */
export class AgentFinder {
  /** `ownerId`: the value of OWNER_ENV in this platform's agents. */
  constructor(private readonly ownerId: string) {}

  /**
   * Whether pid is a live agent of this platform for the workspace. A pid we may not signal (EPERM) belongs to
   * another user, and our agents run as our user: not ours. Otherwise its environment decides: the workspace's id,
   * and this platform's marker (absent only in agents started before there was one).
   */
  isAgent(pid: number, workspaceId: string): boolean {
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
  scan(): FoundAgent[] {
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

  /**
   * SIGTERM, SIGKILL after the grace period, then at most KILL_WAIT_MS more. Returns the pids still there. Our own
   * children are gone only once reaped (their 'exit' event); until then they are zombies that kill(0) still sees.
   */
  async terminate(targets: Map<number, string>, children: Map<number, ChildProcess>, graceMs: number): Promise<number[]> {
    const gone = new Map<number, () => boolean>();
    for (const [pid, workspaceId] of targets) {
      const child = children.get(pid);
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
    await waitUntil(Date.now() + graceMs);
    for (const pid of left()) signalGroup(pid, 'SIGKILL');
    await waitUntil(Date.now() + KILL_WAIT_MS);
    return left();
  }
}

/** Children are process-group leaders (detached), so signal the group: the cgroup shell wrapper execs, but be sure. */
export function signalGroup(pid: number, sig: NodeJS.Signals): void {
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
