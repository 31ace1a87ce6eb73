/**
 * config.checks, run for real against the machine's local port while it is started, so a broken agent shows
 * up as failing checks the way it would on Fly.
 */
import { canConnect } from '../runner.js';
import { parseGoDuration } from '../util.js';
import type { EngineState } from './state.js';
import type { CheckState, Json, MachineRecord } from './types.js';

export function startChecks(e: EngineState, m: MachineRecord, epoch: number): void {
  const checks = Object.entries<Json>(m.config.checks ?? {});
  if (!checks.length) return;
  const run = async () => {
    if (m.epoch !== epoch || m.state !== 'started' || e.closed) return;
    let minInterval = Infinity;
    for (const [name, c] of checks) {
      const iv = parseGoDuration(c.interval ?? '15s');
      minInterval = Math.min(minInterval, iv instanceof Error ? 15_000 : Math.max(1000, iv));
      const to = parseGoDuration(c.timeout ?? '2s');
      const timeoutMs = to instanceof Error ? 2000 : Math.max(100, to);
      const port = m.hostPort;
      let status: CheckState['status'] = 'critical';
      let output = '';
      const light = m.proc?.probe ? m.proc : undefined;
      if (light) {
        // A light agent has no port: the check's request is answered in memory; tcp passes while it runs.
        try {
          const path = c.type === 'http' ? (c.path ?? '/') : '/healthz';
          const r = await light.probe!(c.type === 'http' ? (c.method ?? 'GET') : 'GET', path);
          status = c.type !== 'http' || (r.status >= 200 && r.status < 400) ? 'passing' : 'critical';
          output = c.type === 'http' ? `HTTP GET ${path}: ${r.status}` : 'connection succeeded';
        } catch (e) {
          output = c.type === 'http' ? `HTTP GET ${c.path ?? '/'}: ${(e as Error).message}` : 'connection refused';
        }
      } else if (port === undefined) output = 'machine has no local port';
      else if (c.type === 'http') {
        try {
          const res = await fetch(`http://127.0.0.1:${port}${c.path ?? '/'}`, {
            method: c.method ?? 'GET',
            signal: AbortSignal.timeout(timeoutMs),
          });
          await res.arrayBuffer().catch(() => undefined);
          status = res.status >= 200 && res.status < 400 ? 'passing' : 'critical';
          output = `HTTP GET ${c.path ?? '/'}: ${res.status}`;
        } catch (e) {
          output = `HTTP GET ${c.path ?? '/'}: ${(e as Error).message}`;
        }
      } else {
        const ok = await canConnect(port, '127.0.0.1', timeoutMs);
        status = ok ? 'passing' : 'critical';
        output = ok ? 'connection succeeded' : 'connection refused';
      }
      if (m.epoch !== epoch) return;
      m.checks.set(name, { name, status, output, updatedAt: e.clock.now() });
    }
    m.checkTimer = e.after(minInterval, () => void run());
  };
  void run();
}

export function stopChecks(e: EngineState, m: MachineRecord): void {
  e.cancel(m.checkTimer);
  m.checkTimer = undefined;
  for (const [name, c] of m.checks) m.checks.set(name, { ...c, status: 'critical', output: `machine is ${m.state}` });
}
