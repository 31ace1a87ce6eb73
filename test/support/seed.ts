import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { ROOT } from './harness.js';

/**
 * The seed page's Setup block, split into its numbered steps, exactly as written. The only change made when
 * running them is the port, because tests pick free ports: `localhost:8080` → `localhost:<port>`.
 */
export function seedSteps(): Map<number, string> {
  const shared = path.resolve(ROOT, '..', 'shared', 'seed', 'fly-machines-provisioner.md');
  const file = fs.existsSync(shared) ? shared : path.join(ROOT, 'test', 'fixtures', 'seed-fly-machines-provisioner.md');
  const page = fs.readFileSync(file, 'utf8').replace(/\r\n?/g, '\n');
  // The stored page is a rendered copy: every source line is followed by "|" and "||" border lines. Drop those.
  const lines = page.split('\n').filter((l) => !/^\|{1,2}$/.test(l));
  const start = lines.findIndex((l) => l.trim() === '```bash');
  const end = lines.findIndex((l, i) => i > start && l.trim() === '```');
  const steps = new Map<number, string>();
  let current: number | null = null;
  for (const l of lines.slice(start + 1, end)) {
    const m = l.match(/^# (\d+)\. /);
    if (m) current = Number(m[1]);
    if (current !== null) steps.set(current, `${steps.get(current) ?? ''}${l}\n`);
  }
  return steps;
}

/** Runs the chosen steps in one bash, as a user would paste them, and returns what it printed. */
export async function runSeedSteps(numbers: number[], port: number, env: Record<string, string> = {}, timeoutMs = 120_000) {
  const steps = seedSteps();
  const script = numbers
    .map((n) => {
      const s = steps.get(n);
      if (!s) throw new Error(`the seed has no step ${n}`);
      return s.replaceAll('localhost:8080', `localhost:${port}`);
    })
    .join('\n');
  const child = spawn('bash', ['-c', script], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d) => (stdout += d));
  child.stderr.on('data', (d) => (stderr += d));
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
  const code: number = await new Promise((r) => child.on('exit', (c) => r(c ?? -1)));
  clearTimeout(timer);
  return { code, stdout, stderr, script };
}
