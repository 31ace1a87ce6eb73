import { TaskState, type Task } from '@a2a-js/sdk';
import { ServerCallContext } from '@a2a-js/sdk/server';
import { describe, expect, it } from 'vitest';
import { PLATFORM_CALLER } from '../../src/agent/auth.js';
import { BoundedTaskStore } from '../../src/agent/task-store.js';

const ctx = new ServerCallContext({ user: PLATFORM_CALLER });

function task(id: string, state: TaskState, timestamp = new Date().toISOString()): Task {
  return { id, contextId: 'c', status: { state, message: undefined, timestamp }, artifacts: [], history: [], metadata: undefined };
}

describe('bounded task store', () => {
  it('saves copies and loads them back', async () => {
    const store = new BoundedTaskStore(10);
    const t = task('a', TaskState.TASK_STATE_WORKING);
    await store.save(t, ctx);
    t.contextId = 'mutated';
    expect((await store.load('a', ctx))?.contextId).toBe('c');
    expect(await store.load('missing', ctx)).toBeUndefined();
    expect(await store.load('a', new ServerCallContext({ user: { isAuthenticated: true, userName: 'other' } }))).toBeUndefined();
  });

  it('drops the oldest finished tasks first and never a running one', async () => {
    const store = new BoundedTaskStore(3);
    await store.save(task('running-old', TaskState.TASK_STATE_WORKING), ctx);
    await store.save(task('done-1', TaskState.TASK_STATE_COMPLETED), ctx);
    await store.save(task('done-2', TaskState.TASK_STATE_FAILED), ctx);
    await store.save(task('done-3', TaskState.TASK_STATE_COMPLETED), ctx);
    expect(store.size).toBe(3);
    expect(await store.load('running-old', ctx)).toBeDefined();
    expect(await store.load('done-1', ctx)).toBeUndefined();
    expect(await store.load('done-3', ctx)).toBeDefined();
  });

  it('lists with the SDK semantics (newest status first, paging)', async () => {
    const store = new BoundedTaskStore(10);
    await store.save(task('t1', TaskState.TASK_STATE_COMPLETED, '2026-01-01T00:00:01.000Z'), ctx);
    await store.save(task('t2', TaskState.TASK_STATE_COMPLETED, '2026-01-01T00:00:02.000Z'), ctx);
    const page = await store.list(
      { tenant: '', contextId: '', status: TaskState.TASK_STATE_UNSPECIFIED, pageSize: 1, pageToken: '', statusTimestampAfter: undefined },
      ctx,
    );
    expect(page.tasks.map((t) => t.id)).toEqual(['t2']);
    expect(page.totalSize).toBe(2);
    expect(page.nextPageToken).not.toBe('');
  });
});
