import { describe, expect, it } from 'vitest';
import { CallTraffic, MAX_LATENCY_SAMPLES } from '../../src/server/a2a/traffic.js';
import { startsAsRpcError } from '../../src/server/a2a/proxy.js';

/** The aggregator with a hand-driven timer and clock: pulses come out only when the test fires the timer. */
function traffic() {
  const pulses: { workspaceId: string; data: any; type: string; at: string }[] = [];
  const timers: { fn: () => void; ms: number; cleared: boolean }[] = [];
  let now = Date.parse('2026-01-01T00:00:00.000Z');
  const t = new CallTraffic({
    pulse: (workspaceId, data, type, at) => pulses.push({ workspaceId, data, type, at }),
    now: () => now,
    setTimer: (fn, ms) => {
      const h = { fn, ms, cleared: false };
      timers.push(h);
      return h;
    },
    clearTimer: (h) => ((h as { cleared: boolean }).cleared = true),
    random: () => 0.999, // past the cap, later samples never replace earlier ones: deterministic
  });
  const live = () => timers.filter((h) => !h.cleared);
  const fire = () => {
    const h = live().at(-1)!;
    h.cleared = true;
    now += h.ms;
    h.fn();
  };
  return { t, pulses, timers, live, fire };
}

describe('A2A call traffic (a2a.calls pulses)', () => {
  it('aggregates many calls of one interval into one pulse per edge: count, errors, samples capped and rounded', () => {
    const { t, pulses, timers, fire } = traffic();
    for (let i = 0; i < 200; i++) t.record('a', 'b', 1 + i * 0.123456, i % 10 === 0);
    t.record('b', 'a', 2.04, false);
    t.record('c', 'b', 7.96, true);
    expect(pulses).toEqual([]);
    // One timer for everything, however many calls.
    expect(timers).toHaveLength(1);
    expect(timers[0]!.ms).toBe(1000);
    fire();
    expect(pulses).toHaveLength(3);
    const ab = pulses.find((p) => p.data.from === 'a' && p.data.to === 'b')!;
    expect(ab).toMatchObject({ type: 'a2a.calls', workspaceId: 'b', at: '2026-01-01T00:00:01.000Z', data: { calls: 200, errors: 20, interval_ms: 1000 } });
    expect(ab.data.latencies_ms).toHaveLength(MAX_LATENCY_SAMPLES);
    expect(ab.data.latencies_ms.slice(0, 3)).toEqual([1, 1.1, 1.2]);
    for (const v of ab.data.latencies_ms) expect(Math.round(v * 10) / 10).toBe(v);
    expect(pulses.find((p) => p.data.from === 'b')).toMatchObject({ workspaceId: 'a', data: { from: 'b', to: 'a', calls: 1, errors: 0, latencies_ms: [2] } });
    expect(pulses.find((p) => p.data.from === 'c')).toMatchObject({ workspaceId: 'b', data: { calls: 1, errors: 1, latencies_ms: [8] } });
    // The exact shape the UI builds on.
    expect(Object.keys(ab.data).sort()).toEqual(['calls', 'errors', 'from', 'interval_ms', 'latencies_ms', 'to']);
  });

  it('runs no timer without traffic, stops after a quiet flush, and starts the next interval empty', () => {
    const { t, pulses, timers, live, fire } = traffic();
    expect(t.pending).toBe(false);
    t.flush();
    expect(pulses).toEqual([]);
    expect(timers).toEqual([]);

    t.record('a', 'b', 5, false);
    expect(t.pending).toBe(true);
    fire();
    expect(pulses).toHaveLength(1);
    expect(t.pending).toBe(false);
    expect(live()).toEqual([]);

    // The next call starts a new interval: its pulse has only its own calls.
    t.record('a', 'b', 6, false);
    fire();
    expect(pulses).toHaveLength(2);
    expect(pulses[1]!.data).toMatchObject({ calls: 1, latencies_ms: [6] });
    expect(t.pending).toBe(false);
  });

  it('counts a late failure of a counted call (a stream that broke) only while its interval is open', () => {
    const { t, pulses, fire } = traffic();
    t.record('a', 'b', 3, false);
    t.fail('a', 'b');
    t.fail('a', 'b'); // never more errors than calls
    fire();
    expect(pulses[0]!.data).toMatchObject({ calls: 1, errors: 1 });
    t.fail('a', 'b');
    expect(t.pending).toBe(false);
    t.close();
  });

  it('drops what is pending on close', () => {
    const { t, pulses, live } = traffic();
    t.record('a', 'b', 1, false);
    t.close();
    expect(live()).toEqual([]);
    t.flush();
    expect(pulses).toEqual([]);
  });

  it('tells a JSON-RPC error answer from a result by its first bytes', () => {
    const b = (s: string) => Buffer.from(s);
    expect(startsAsRpcError(b('{"jsonrpc":"2.0","id":"1","error":{"code":-32601,"message":"no"}}'))).toBe(true);
    expect(startsAsRpcError(b('{"jsonrpc":"2.0","id":"1","result":{"parts":[{"text":"\\"error\\": none"}]}}'))).toBe(false);
    expect(startsAsRpcError(b('{ "error" : {"code": 1}, "id": null, "jsonrpc": "2.0" }'))).toBe(true);
    expect(startsAsRpcError(b('{"jsonrpc":"2.0","id":"error","result":{}}'))).toBe(false);
    expect(startsAsRpcError(b('not json'))).toBe(false);
  });
});
