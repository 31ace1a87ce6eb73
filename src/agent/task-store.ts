import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { Role, Task as TaskCodec, TaskState, type ListTasksRequest, type ListTasksResponse, type Task } from '@a2a-js/sdk';
import { InMemoryTaskStore, resolveUserScope, ServerCallContext, type TaskStore } from '@a2a-js/sdk/server';

const TERMINAL = new Set<TaskState>([
  TaskState.TASK_STATE_COMPLETED,
  TaskState.TASK_STATE_FAILED,
  TaskState.TASK_STATE_CANCELED,
  TaskState.TASK_STATE_REJECTED,
]);

/** States whose turn was running in the process that wrote the file; after a restart nothing drives them. */
const ACTIVE = new Set<TaskState>([TaskState.TASK_STATE_SUBMITTED, TaskState.TASK_STATE_WORKING]);

export const DEFAULT_MAX_TASKS = 500;
export const TASKS_FILE = 'a2a-tasks.json';
export const RESTART_FAILURE_TEXT = 'The agent restarted while this task was running; send the message again.';

export type StoreLog = (message: string, detail: Record<string, unknown>) => void;

interface Entry {
  task: Task;
  context: ServerCallContext;
}

/** One task in the file: the task as v1 ProtoJSON plus the owner scope the SDK keys tasks by. */
interface StoredEntry {
  tenant: string;
  user: string;
  task: unknown;
}

interface StoredFile {
  version: 1;
  tasks: StoredEntry[];
}

/**
 * The SDK's InMemoryTaskStore never forgets, and every streamed turn leaves a task behind; an agent that runs
 * for weeks would grow without limit. This keeps the most recently saved `maxTasks`, dropping the oldest
 * finished ones first (a running task is never dropped: its turn still writes to it).
 *
 * With a `file`, every save also rewrites that file (v1 ProtoJSON, written to a temporary file and renamed, so a
 * crash leaves the old or the new version, never half of one); `open()` reads it back after a restart. Writes are
 * coalesced: a save waits for one write that includes it, but saves during a write share the next one.
 */
export class BoundedTaskStore implements TaskStore {
  private readonly entries = new Map<string, Entry>();
  private writing: Promise<void> | null = null;
  private queued: Promise<void> | null = null;

  constructor(
    private readonly maxTasks: number = DEFAULT_MAX_TASKS,
    readonly file: string | null = null,
    private readonly log: StoreLog = () => {},
  ) {}

  /**
   * A store backed by `file`, loaded from it if it exists. Tasks that were submitted or working when the file was
   * written are marked failed: the turn that would have finished them died with the previous process.
   * An unreadable file is moved aside (`<file>.corrupt-<time>`) rather than blocking the agent's start.
   */
  static async open(
    file: string,
    maxTasks: number = DEFAULT_MAX_TASKS,
    log: StoreLog = () => {},
  ): Promise<BoundedTaskStore> {
    const store = new BoundedTaskStore(maxTasks, file, log);
    const dir = path.dirname(file);
    fs.mkdirSync(dir, { recursive: true });
    // Temporary files of writes a crash interrupted; the renamed file is complete without them.
    for (const name of fs.readdirSync(dir)) {
      if (name.startsWith(`${path.basename(file)}.`) && name.endsWith('.tmp')) fs.rmSync(path.join(dir, name), { force: true });
    }
    let raw: string | null = null;
    try {
      raw = fs.readFileSync(file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    if (raw === null) return store;
    let interrupted = 0;
    try {
      const parsed = JSON.parse(raw) as StoredFile;
      if (parsed.version !== 1 || !Array.isArray(parsed.tasks)) throw new Error('unknown task file format');
      for (const stored of parsed.tasks) {
        const task = TaskCodec.fromJSON(stored.task as Record<string, unknown>);
        if (!task.id) continue;
        if (task.status && ACTIVE.has(task.status.state)) {
          task.status = {
            state: TaskState.TASK_STATE_FAILED,
            timestamp: new Date().toISOString(),
            message: {
              messageId: randomUUID(),
              contextId: task.contextId,
              taskId: task.id,
              role: Role.ROLE_AGENT,
              parts: [{ content: { $case: 'text', value: RESTART_FAILURE_TEXT }, mediaType: 'text/plain', filename: '', metadata: undefined }],
              metadata: { error: true },
              extensions: [],
              referenceTaskIds: [],
            },
          };
          interrupted++;
        }
        const context = new ServerCallContext({
          user: { isAuthenticated: true, userName: stored.user },
          ...(stored.tenant ? { tenant: stored.tenant } : {}),
        });
        store.entries.set(scopedKey(task.id, context), { task, context });
      }
    } catch (err) {
      const aside = `${file}.corrupt-${Date.now()}`;
      fs.renameSync(file, aside);
      store.entries.clear();
      log('the task file could not be read; moved it aside and starting with no tasks', {
        file,
        moved_to: aside,
        err: err instanceof Error ? err.message : String(err),
      });
      return store;
    }
    const loaded = store.size;
    store.evict();
    if (interrupted > 0 || store.size < loaded) await store.persist();
    log('loaded tasks from the state directory', { file, tasks: store.size, interrupted });
    return store;
  }

  async save(task: Task, context: ServerCallContext): Promise<void> {
    const key = scopedKey(task.id, context);
    // Delete-then-set moves the task to the back of the Map, which makes eviction least-recently-saved first.
    this.entries.delete(key);
    this.entries.set(key, { task: structuredClone(task), context });
    this.evict();
    // A full disk must not fail the turn: the task is still served from memory, and the next save retries.
    await this.persist().catch((err: unknown) =>
      this.log('could not write the task file', { file: this.file, err: err instanceof Error ? err.message : String(err) }),
    );
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

  /** Resolves once everything saved so far is on disk (no-op without a file). */
  persist(): Promise<void> {
    if (!this.file) return Promise.resolve();
    if (this.queued) return this.queued;
    if (!this.writing) {
      this.writing = this.writeNow().finally(() => (this.writing = null));
      return this.writing;
    }
    // A write is in progress and may have serialized before our change: queue exactly one more after it.
    const after = this.writing;
    this.queued = after.catch(() => undefined).then(() => {
      this.queued = null;
      return this.persist();
    });
    return this.queued;
  }

  private async writeNow(): Promise<void> {
    const file = this.file!;
    const body: StoredFile = {
      version: 1,
      tasks: [...this.entries.values()].map((e) => ({
        tenant: e.context.tenant ?? '',
        user: resolveUserScope(e.context),
        task: TaskCodec.toJSON(e.task),
      })),
    };
    const tmp = `${file}.${process.pid}.tmp`;
    await fs.promises.writeFile(tmp, JSON.stringify(body), { mode: 0o600 });
    await fs.promises.rename(tmp, file);
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
