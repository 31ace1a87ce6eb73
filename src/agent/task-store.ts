import { TaskState, type ListTasksRequest, type ListTasksResponse, type Task } from '@a2a-js/sdk';
import { InMemoryTaskStore, resolveUserScope, type ServerCallContext, type TaskStore } from '@a2a-js/sdk/server';

const TERMINAL = new Set<TaskState>([
  TaskState.TASK_STATE_COMPLETED,
  TaskState.TASK_STATE_FAILED,
  TaskState.TASK_STATE_CANCELED,
  TaskState.TASK_STATE_REJECTED,
]);

export const DEFAULT_MAX_TASKS = 500;

interface Entry {
  task: Task;
  context: ServerCallContext;
}

/**
 * The SDK's InMemoryTaskStore never forgets, and every streamed turn leaves a task behind; an agent that runs
 * for weeks would grow without limit. This keeps the most recently saved `maxTasks`, dropping the oldest
 * finished ones first (a running task is never dropped: its turn still writes to it).
 */
export class BoundedTaskStore implements TaskStore {
  private readonly entries = new Map<string, Entry>();

  constructor(private readonly maxTasks: number = DEFAULT_MAX_TASKS) {}

  async save(task: Task, context: ServerCallContext): Promise<void> {
    const key = scopedKey(task.id, context);
    // Delete-then-set moves the task to the back of the Map, which makes eviction least-recently-saved first.
    this.entries.delete(key);
    this.entries.set(key, { task: structuredClone(task), context });
    this.evict();
  }

  async load(taskId: string, context: ServerCallContext): Promise<Task | undefined> {
    const entry = this.entries.get(scopedKey(taskId, context));
    return entry ? structuredClone(entry.task) : undefined;
  }

  /** ListTasks is rare; replaying into the SDK's store reuses its filtering and paging rules exactly. */
  async list(params: ListTasksRequest, context: ServerCallContext): Promise<ListTasksResponse> {
    const scratch = new InMemoryTaskStore();
    for (const entry of this.entries.values()) await scratch.save(entry.task, entry.context);
    return scratch.list(params, context);
  }

  get size(): number {
    return this.entries.size;
  }

  private evict(): void {
    if (this.entries.size <= this.maxTasks) return;
    for (const [key, entry] of this.entries) {
      if (this.entries.size <= this.maxTasks) return;
      const state = entry.task.status?.state;
      if (state !== undefined && TERMINAL.has(state)) this.entries.delete(key);
    }
  }
}

function scopedKey(taskId: string, context: ServerCallContext): string {
  return `${context.tenant ?? ''}\0${resolveUserScope(context)}\0${taskId}`;
}
