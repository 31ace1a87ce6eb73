import { describe, expect, it } from 'vitest';
import type { InstanceEvent } from '../../src/core/provisioner.js';
import { InstanceWatch } from '../../src/backends/shared/instance-watch.js';
import { exitReason } from '../../src/backends/shared/exit-reason.js';

function watching() {
  const w = new InstanceWatch();
  const events: InstanceEvent[] = [];
  const unsubscribe = w.subscribe((ev) => events.push(ev));
  return { w, events, unsubscribe };
}

const died = { state: 'failed' as const, reason: 'exited with code 1', exitCode: 1 };

describe('InstanceWatch', () => {
  it('reports the death of an armed incarnation once, with the workspace it was armed for', () => {
    const { w, events } = watching();
    w.arm('ws-1', 'w1', 'c1');
    expect(w.report('ws-1', 'c1', died)).toEqual({ workspaceId: 'w1', instanceId: 'ws-1', ...died });
    expect(w.report('ws-1', 'c1', died)).toBeNull();
    expect(events).toEqual([{ workspaceId: 'w1', instanceId: 'ws-1', ...died }]);
    expect(w.watched()).toEqual([]);
  });

  it('does not report an instance that was never armed, or was disarmed because we stopped it', () => {
    const { w, events } = watching();
    expect(w.report('ws-1', 'c1', died)).toBeNull();
    w.arm('ws-1', 'w1', 'c1');
    w.disarm('ws-1');
    expect(w.isNews('ws-1', 'c1')).toBe(false);
    expect(w.report('ws-1', 'c1', died)).toBeNull();
    expect(events).toEqual([]);
  });

  it('ignores the death of an earlier incarnation once a new one is armed', () => {
    const { w, events } = watching();
    w.arm('ws-1', 'w1', 'c1');
    w.arm('ws-1', 'w1', 'c2');
    expect(w.report('ws-1', 'c1', died)).toBeNull();
    expect(w.report('ws-1', 'c2', died)).not.toBeNull();
    expect(events.length).toBe(1);
  });

  it('makes up a new incarnation on every arm when the backend has none, so a check cannot report across a re-arm', () => {
    const { w } = watching();
    const first = w.arm('m1', 'w1');
    const second = w.arm('m1', 'w1');
    expect(first).not.toEqual(second);
    expect(w.report('m1', first, died)).toBeNull();
    expect(w.report('m1', second, died)).not.toBeNull();
  });

  it('drops what is seen while an operation of ours is in flight, and nests operations', () => {
    const { w, events } = watching();
    w.arm('ws-1', 'w1', 7);
    const endA = w.begin('ws-1');
    const endB = w.begin('ws-1');
    expect(w.watched()).toEqual([]);
    expect(w.report('ws-1', 7, died)).toBeNull();
    endA();
    endA(); // a second end of the same operation does not end the other
    expect(w.isNews('ws-1', 7)).toBe(false);
    endB();
    expect(w.watched()).toEqual([{ instanceId: 'ws-1', workspaceId: 'w1', incarnation: 7 }]);
    expect(w.report('ws-1', 7, died)).not.toBeNull();
    expect(events.length).toBe(1);
  });

  it('counts instances armed or operated on, and stops telling a listener that unsubscribed', () => {
    const { w, events, unsubscribe } = watching();
    const end = w.begin('m1');
    w.arm('m2', 'w2', 'x');
    expect(w.size).toBe(2);
    end();
    expect(w.size).toBe(1);
    unsubscribe();
    w.report('m2', 'x', died);
    expect(events).toEqual([]);
    expect(w.size).toBe(0);
  });
});

describe('exitReason', () => {
  it('words what a container engine knows: an exit status, OOM with the tier limit, an engine error', () => {
    expect(exitReason({ code: 137, oom: true, tier: 1 })).toBe('OOM: the kernel killed the agent at the tier 1 memory limit (256 MB; exit code 137)');
    expect(exitReason({ oom: true, tier: 2 })).toMatch(/tier 2 memory limit \(512 MB; exit code 137\)/);
    expect(exitReason({ code: 127, error: 'exec: "node": not found' })).toBe('the engine could not run it: exec: "node": not found');
    expect(exitReason({ code: 137 })).toBe('killed (SIGKILL, exit code 137)');
    expect(exitReason({ code: 143 })).toBe('terminated (SIGTERM, exit code 143)');
    expect(exitReason({ code: 3 })).toBe('exited with code 3');
    expect(exitReason({})).toBe('exited');
  });

  it('words what a process parent knows: the signal by name, and a status nobody saw', () => {
    expect(exitReason({ code: null, signal: 'SIGKILL', oom: true })).toBe(`killed: out of memory (OOM) at the tier's memory limit`);
    expect(exitReason({ code: null, signal: 'SIGTERM' })).toBe('killed by SIGTERM');
    // A status of 137 chosen by the program itself is not a kill when the signal is known to be none.
    expect(exitReason({ code: 137, signal: null })).toBe('exited with code 137');
    expect(exitReason({ code: null, signal: null, unknown: 'exited (status unknown)' })).toBe('exited (status unknown)');
  });
});
