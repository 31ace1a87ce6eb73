import { describe, expect, it } from 'vitest';
import { restartDecision } from '../../src/core/restart-policy.js';

const t = { crashWindowMs: 600_000, crashLoopMax: 3, restartBackoffMs: 1000, restartBackoffMaxMs: 8000 };
const now = Date.parse('2026-12-02T12:00:00Z');
const ago = (ms: number) => new Date(now - ms).toISOString();

describe('restart policy', () => {
  it('doubles the backoff per automatic restart inside the crash window, up to the maximum', () => {
    const delays = [[], [ago(1000)], [ago(2000), ago(1000)]].map((restarts) => restartDecision({ restarts, statusReason: null }, 'exited', { ...t, crashLoopMax: 10 }, now));
    expect(delays.map((d) => d.kind === 'restart' && d.delayMs)).toEqual([1000, 2000, 4000]);
    const many = restartDecision({ restarts: Array.from({ length: 6 }, (_, i) => ago(1000 * (i + 1))), statusReason: null }, 'exited', { ...t, crashLoopMax: 10 }, now);
    expect(many).toMatchObject({ kind: 'restart', delayMs: 8000 });
  });

  it('forgets restarts older than the window', () => {
    const d = restartDecision({ restarts: [ago(700_000), ago(650_000), ago(1000)], statusReason: null }, 'exited', t, now);
    expect(d).toEqual({ kind: 'restart', delayMs: 2000, recent: [ago(1000)] });
  });

  it('calls it a crash loop after crashLoopMax restarts inside the window, saying the last reason', () => {
    const d = restartDecision({ restarts: [ago(3000), ago(2000), ago(1000)], statusReason: null }, 'exit code 1', t, now);
    expect(d).toEqual({ kind: 'crash loop', why: 'crash loop: the agent stopped 4 times within 10 min; last: exit code 1' });
  });

  it('does not count a backend outage, nor the automatic restart that ran into it, and backs off by outage attempts', () => {
    const restarts = [ago(3000), ago(2000), ago(1000)];
    const d = restartDecision({ restarts, statusReason: 'automatic restart (attempt 3)' }, 'BACKEND_UNAVAILABLE', t, now, { outageAttempts: 2 });
    expect(d).toEqual({ kind: 'restart', delayMs: 4000, recent: restarts.slice(0, 2) });
  });
});
