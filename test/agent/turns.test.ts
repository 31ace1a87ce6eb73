import { describe, expect, it } from 'vitest';
import { ConversationStore } from '../../src/agent/conversation.js';
import { backoffDelay } from '../../src/agent/platform-client.js';
import { ERROR_WINDOW, ErrorWindow, TurnTracker } from '../../src/agent/turns.js';

describe('error-rate accounting', () => {
  it('is 0 with no turns and counts failures over finished turns', () => {
    const w = new ErrorWindow();
    expect(w.rate).toBe(0);
    w.record(false);
    w.record(true);
    w.record(false);
    w.record(true);
    expect(w.rate).toBe(0.5);
  });

  it('only looks at the last 20 turns', () => {
    const w = new ErrorWindow();
    for (let i = 0; i < 20; i++) w.record(true);
    expect(w.rate).toBe(1);
    for (let i = 0; i < 15; i++) w.record(false);
    expect(w.count).toBe(ERROR_WINDOW);
    expect(w.rate).toBe(5 / 20);
    for (let i = 0; i < 5; i++) w.record(false);
    expect(w.rate).toBe(0);
  });

  it('tracks active turns, the current task and outcomes; canceled turns do not count as errors', () => {
    const t = new TurnTracker();
    expect(t.activeCount).toBe(0);
    expect(t.currentTask).toBeNull();
    t.begin('task-a', 'ctx');
    t.begin('task-b', 'ctx');
    expect(t.activeCount).toBe(2);
    expect(t.currentTask).toBe('task-b');
    t.end('task-b', 'failed');
    expect(t.currentTask).toBe('task-a');
    expect(t.errorRate).toBe(1);
    t.end('task-a', 'ok');
    expect(t.errorRate).toBe(0.5);
    const c = t.begin('task-c', 'ctx');
    expect(t.cancel('task-c')).toBe(true);
    expect(c.canceled).toBe(true);
    expect(c.signal.aborted).toBe(true);
    t.end('task-c', 'canceled');
    expect(t.errorRate).toBe(0.5);
    expect(t.totals).toEqual({ turns: 2, failed: 1 });
    expect(t.cancel('task-c')).toBe(false);
    expect(t.activeCount).toBe(0);
  });

  it('whenIdle resolves when the last running turn ends', async () => {
    const t = new TurnTracker();
    await t.whenIdle();
    t.begin('x', 'ctx');
    let idle = false;
    const waiting = t.whenIdle().then(() => (idle = true));
    await Promise.resolve();
    expect(idle).toBe(false);
    t.end('x', 'ok');
    await waiting;
    expect(idle).toBe(true);
  });

  it('abortAll aborts every running turn without marking them canceled', () => {
    const t = new TurnTracker();
    const a = t.begin('a', 'ctx');
    const b = t.begin('b', 'ctx');
    expect(t.abortAll('shutdown')).toBe(2);
    expect(a.signal.aborted && b.signal.aborted).toBe(true);
    expect(a.canceled || b.canceled).toBe(false);
  });
});

describe('registration back-off', () => {
  it('starts at 250 ms, doubles, caps at 5 s, with jitter in [d/2, d]', () => {
    expect(backoffDelay(1, undefined, () => 1)).toBe(250);
    expect(backoffDelay(1, undefined, () => 0)).toBe(125);
    expect(backoffDelay(2, undefined, () => 1)).toBe(500);
    expect(backoffDelay(3, undefined, () => 1)).toBe(1000);
    expect(backoffDelay(10, undefined, () => 1)).toBe(5000);
    expect(backoffDelay(50, undefined, () => 0)).toBe(2500);
    for (let attempt = 1; attempt < 30; attempt++) {
      const d = backoffDelay(attempt);
      expect(d).toBeGreaterThanOrEqual(125);
      expect(d).toBeLessThanOrEqual(5000);
    }
  });
});

describe('conversation memory', () => {
  it('keeps pairs per context, bounded in messages and contexts', () => {
    const store = new ConversationStore({ maxMessages: 4, maxContexts: 2, maxChars: 10_000 });
    store.record('a', 'q1', 'a1');
    store.record('a', 'q2', 'a2');
    store.record('a', 'q3', 'a3');
    expect(store.history('a').map((m) => m.text)).toEqual(['q2', 'a2', 'q3', 'a3']);
    store.record('b', 'x', 'y');
    store.record('a', 'q4', 'a4'); // touches a, so b is now the oldest
    store.record('c', 'z', 'w');
    expect(store.size).toBe(2);
    expect(store.history('b')).toEqual([]);
    expect(store.history('a').at(-1)).toEqual({ role: 'assistant', text: 'a4' });
  });

  it('drops old pairs when a context grows past its character budget', () => {
    const store = new ConversationStore({ maxMessages: 100, maxContexts: 10, maxChars: 50 });
    store.record('a', 'x'.repeat(30), 'y');
    store.record('a', 'q', 'z'.repeat(30));
    expect(store.history('a').map((m) => m.text)).toEqual(['q', 'z'.repeat(30)]);
  });
});
