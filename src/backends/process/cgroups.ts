import fs from 'node:fs';
import path from 'node:path';

/**
 * Best-effort cgroup limits for the process backend. Works with cgroup v1 (memory and cpu controllers mounted
 * separately) and v2 (unified). Where the hierarchy is not writable, nothing is enforced and describe() says so.
 */
export interface CgroupSupport {
  memory: boolean;
  cpu: boolean;
  version: 1 | 2 | null;
}

const ROOT = '/sys/fs/cgroup';
const PARENT = 'molecule';

function writable(dir: string): boolean {
  try {
    fs.mkdirSync(path.join(dir, PARENT), { recursive: true });
    return true;
  } catch {
    return false;
  }
}

export function detectCgroups(): CgroupSupport {
  if (process.platform !== 'linux') return { memory: false, cpu: false, version: null };
  if (fs.existsSync(path.join(ROOT, 'cgroup.controllers'))) {
    const ok = writable(ROOT);
    if (ok) {
      try {
        fs.writeFileSync(path.join(ROOT, PARENT, 'cgroup.subtree_control'), '+memory +cpu');
      } catch {
        return { memory: false, cpu: false, version: 2 };
      }
    }
    return { memory: ok, cpu: ok, version: 2 };
  }
  const memory = fs.existsSync(path.join(ROOT, 'memory', 'cgroup.procs')) && writable(path.join(ROOT, 'memory'));
  const cpu = fs.existsSync(path.join(ROOT, 'cpu', 'cgroup.procs')) && writable(path.join(ROOT, 'cpu'));
  return { memory, cpu, version: memory || cpu ? 1 : null };
}

/** Creates the instance's cgroups with limits; returns the cgroup.procs files the child must join. */
export function createCgroups(support: CgroupSupport, name: string, memoryMb: number, cpus: number): string[] {
  const procs: string[] = [];
  const bytes = String(memoryMb * 1024 * 1024);
  if (support.version === 2 && support.memory) {
    const dir = path.join(ROOT, PARENT, name);
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(path.join(dir, 'memory.max'), bytes);
    fs.writeFileSync(path.join(dir, 'cpu.max'), `${cpus * 100000} 100000`);
    procs.push(path.join(dir, 'cgroup.procs'));
    return procs;
  }
  if (support.memory) {
    const dir = path.join(ROOT, 'memory', PARENT, name);
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(path.join(dir, 'memory.limit_in_bytes'), bytes);
    procs.push(path.join(dir, 'cgroup.procs'));
  }
  if (support.cpu) {
    const dir = path.join(ROOT, 'cpu', PARENT, name);
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(path.join(dir, 'cpu.cfs_period_us'), '100000');
    fs.writeFileSync(path.join(dir, 'cpu.cfs_quota_us'), String(cpus * 100000));
    procs.push(path.join(dir, 'cgroup.procs'));
  }
  return procs;
}

/** Removes the instance's cgroups (only possible once no process is left in them). */
export function removeCgroups(support: CgroupSupport, name: string): void {
  const dirs =
    support.version === 2
      ? [path.join(ROOT, PARENT, name)]
      : [path.join(ROOT, 'memory', PARENT, name), path.join(ROOT, 'cpu', PARENT, name)];
  for (const d of dirs) {
    try {
      fs.rmdirSync(d);
    } catch {
      /* absent, or still has a process: nothing to do */
    }
  }
}

/** Reads the memory cgroup's OOM-kill counter (v1 memory.oom_control / v2 memory.events), if any. */
export function oomKilled(support: CgroupSupport, name: string): boolean {
  try {
    if (support.version === 2) {
      const ev = fs.readFileSync(path.join(ROOT, PARENT, name, 'memory.events'), 'utf8');
      return /oom_kill [1-9]/.test(ev);
    }
    if (support.memory) {
      const ctl = fs.readFileSync(path.join(ROOT, 'memory', PARENT, name, 'memory.oom_control'), 'utf8');
      return /oom_kill [1-9]/.test(ctl);
    }
  } catch {
    /* not readable */
  }
  return false;
}
