import { describe, expect, it } from 'vitest';
import { GroupCommit } from '../../src/core/group-commit.js';
import { HEARTBEAT_BATCH_MAX, HeartbeatWrites, type HeartbeatWrite } from '../../src/core/heartbeat-writes.js';

/** A store write the test lets finish when it wants, recording each batch. */
function gatedWriter() {
  const batches: HeartbeatWrite[][] = [];
  let open: () => void = () => undefined;
  let gate = new Promise<void>((r) => (open = r));
  let failNext: Error | undefined;
  const write = async (batch: HeartbeatWrite[]) => {
    batches.push(batch);
    await gate;
    if (failNext) {
      const e = failNext;
      failNext = undefined;
      throw e;
    }
  };
  return {
    batches,
    write,
    release() {
      open();
      gate = new Promise<void>((r) => (open = r));
    },
    fail(e: Error) {
      failNext = e;
    },
  };
}

const tick = () => new Promise((r) => setImmediate(r));

describe('heartbeat group commit (core/group-commit.ts)', () => {
  it('writes one heartbeat at once when idle, and the ones that arrive meanwhile together in the next batch', async () => {
    const w = gatedWriter();
    const hb = new HeartbeatWrites(w.write, { windowMs: 0 });
    let firstDone = false;
    const first = hb.record('a', 't1', { n: 1 }, 0).then(() => (firstDone = true));
    await tick();
    expect(w.batches.map((b) => b.map((h) => h.id))).toEqual([['a']]);
    const later = ['b', 'c', 'd'].map((id) => hb.record(id, 't2', {}, 0));
    await tick();
    expect(w.batches).toHaveLength(1);
    expect(firstDone).toBe(false);
    w.release();
    await first;
    await tick();
    expect(w.batches.map((b) => b.map((h) => h.id))).toEqual([['a'], ['b', 'c', 'd']]);
    w.release();
    await Promise.all(later);
    await hb.flushed();
  });

  it("keeps a workspace's latest heartbeat of a batch, remembering that an earlier one was busy", async () => {
    const w = gatedWriter();
    const hb = new HeartbeatWrites(w.write, { windowMs: 0 });
    const blocker = hb.record('x', 't0', {}, 0);
    await tick();
    const both = [hb.record('a', 't1', { n: 1 }, 2), hb.record('a', 't2', { n: 2 }, 0)];
    w.release();
    await blocker;
    await tick();
    expect(w.batches[1]).toEqual([{ id: 'a', at: 't2', heartbeat: { n: 2 }, busy: false, wasBusy: true }]);
    w.release();
    await Promise.all(both);
  });

  it('fails only the heartbeats of a batch that failed, and goes on with the next', async () => {
    const w = gatedWriter();
    const hb = new HeartbeatWrites(w.write, { windowMs: 0 });
    w.fail(new Error('database down'));
    const failed = hb.record('a', 't1', {}, 0);
    await tick();
    const next = hb.record('b', 't1', {}, 0);
    w.release();
    await expect(failed).rejects.toThrow('database down');
    await tick();
    w.release();
    await expect(next).resolves.toBeUndefined();
  });

  it(`writes at most ${HEARTBEAT_BATCH_MAX} per statement`, async () => {
    const sizes: number[] = [];
    const hb = new HeartbeatWrites(async (b) => void sizes.push(b.length), { windowMs: 0 });
    await Promise.all(Array.from({ length: HEARTBEAT_BATCH_MAX + 20 }, (_, i) => hb.record(`w${i}`, 't', {}, 0)));
    expect(sizes).toEqual([HEARTBEAT_BATCH_MAX, 20]);
  });

  it('waits a few milliseconds for others before the first write, so heartbeats a moment apart share it', async () => {
    const batches: string[][] = [];
    const hb = new HeartbeatWrites(async (b) => void batches.push(b.map((h) => h.id)), { windowMs: 30 });
    const first = hb.record('a', 't', {}, 0);
    await new Promise((r) => setTimeout(r, 5));
    const second = hb.record('b', 't', {}, 0);
    await Promise.all([first, second]);
    expect(batches).toEqual([['a', 'b']]);
  });
});

describe('group commit', () => {
  it('hands each item the result the write gave for it, in order', async () => {
    const gc = new GroupCommit<string, number>(async (b) => b.map((s) => s.length), { max: 10 });
    expect(await Promise.all(['a', 'bb', 'ccc'].map((s) => gc.submit(s)))).toEqual([1, 2, 3]);
  });
});
