import fs from 'node:fs';

/**
 * Live processes whose environment holds any of the given `NAME=value` entries (Linux /proc), found without asking
 * a backend: this finds the agents a backend lost track of too. Zombies (empty environ) are not counted.
 */
export function pidsWithEnv(entries: Iterable<string>): number[] {
  const wanted = new Set(entries);
  const found: number[] = [];
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    let environ: string[];
    try {
      environ = fs.readFileSync(`/proc/${entry}/environ`, 'latin1').split('\0');
    } catch {
      continue; // gone meanwhile, or not ours to read
    }
    if (environ.some((kv) => wanted.has(kv))) found.push(Number(entry));
  }
  return found;
}

/** Live agent processes of the given workspaces, by the WORKSPACE_ID in their environment. */
export function agentPids(workspaceIds: Iterable<string>): number[] {
  return pidsWithEnv([...workspaceIds].map((id) => `WORKSPACE_ID=${id}`));
}

/** SIGKILLs each pid's process group (agents are group leaders), else the pid; absent ones are skipped. */
export function killPids(pids: Iterable<number>): void {
  for (const pid of pids) {
    try {
      process.kill(-pid, 'SIGKILL');
    } catch {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        /* gone already */
      }
    }
  }
}

/** Whether pid is a live process: not gone, and not a zombie waiting for its (new) parent to reap it (Linux). */
export function processRunning(pid: number): boolean {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'latin1');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
}
