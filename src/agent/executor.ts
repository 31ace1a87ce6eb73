import { randomUUID } from 'node:crypto';
import { Role, TaskState, type Message, type Part, type Task } from '@a2a-js/sdk';
import { AgentEvent, type AgentExecutor, type ExecutionEventBus, type RequestContext } from '@a2a-js/sdk/server';
import type { Logger } from 'pino';
import type { ConversationStore } from './conversation.js';
import { type ChatProvider, ProviderError } from './providers/types.js';
import type { TurnTracker } from './turns.js';

/**
 * How a turn is answered. The SDK hands the executor the same RequestContext for message/send and
 * message/stream, so the server runs two request handlers, one per mode, and routes by JSON-RPC method:
 * - `message`: one agent Message (message/send's `.result.parts[0].text` is the reply, as the seed expects);
 * - `stream`: a Task (working), artifact chunks as the answer is produced, then a final status update whose
 *   message is the whole reply. Also serves non-blocking sends and sends that continue a task (rpc.ts).
 *
 * A task turn ends in `input-required` instead of `completed` when the reply asks the caller something, by one
 * rule for every provider: its last non-blank character is a question mark (asksForInput). The caller answers
 * with a message carrying the task's id, which runs the next turn of the same task and context.
 */
export type ExecutorMode = 'message' | 'stream';

export interface ExecutorDeps {
  provider: ChatProvider;
  turns: TurnTracker;
  conversations: ConversationStore;
  systemPrompt: () => string;
  logger: Logger;
}

export const ANSWER_ARTIFACT_NAME = 'answer';

export function textPart(text: string): Part {
  return { content: { $case: 'text', value: text }, mediaType: 'text/plain', filename: '', metadata: undefined };
}

function agentMessage(text: string, contextId: string, taskId: string, metadata?: Record<string, unknown>): Message {
  return {
    messageId: randomUUID(),
    contextId,
    taskId,
    role: Role.ROLE_AGENT,
    parts: [textPart(text)],
    metadata,
    extensions: [],
    referenceTaskIds: [],
  };
}

/** The user's text; non-text parts are described rather than dropped, so the model knows something was attached. */
export function userText(message: Message): string {
  return message.parts
    .map((p) => {
      const c = p.content;
      if (!c) return '';
      if (c.$case === 'text') return c.value;
      if (c.$case === 'data') return JSON.stringify(c.value);
      if (c.$case === 'url') return `[file: ${p.filename || c.value}]`;
      return `[file: ${p.filename || 'attachment'}${p.mediaType ? `, ${p.mediaType}` : ''}]`;
    })
    .filter((t) => t !== '')
    .join('\n');
}

/** The input-required rule: the reply ends with a question (trailing quotes, brackets and emphasis ignored). */
export function asksForInput(reply: string): boolean {
  return /\?[\s"'”’)*_\]]*$/.test(reply);
}

/** What the caller sees when the model call fails: the provider's own (already redacted) words. */
export function failureText(err: unknown): string {
  if (err instanceof ProviderError) return `The model call failed (${err.provider}): ${err.message}`;
  const message = err instanceof Error ? err.message : String(err);
  return `The turn failed: ${message}`;
}

export class WorkspaceExecutor implements AgentExecutor {
  constructor(
    private readonly mode: ExecutorMode,
    private readonly deps: ExecutorDeps,
  ) {}

  execute = async (ctx: RequestContext, bus: ExecutionEventBus): Promise<void> => {
    if (this.mode === 'message') await this.answerWithMessage(ctx, bus);
    else await this.answerWithTask(ctx, bus);
  };

  /**
   * Publishes `canceled` itself, whether or not a turn is running: DefaultRequestHandler waits for a terminal
   * event after calling this, and a task with no running execute would otherwise never get one.
   */
  cancelTask = async (taskId: string, bus: ExecutionEventBus): Promise<void> => {
    // The SDK only calls this while the task's event bus is live, which is while its turn runs.
    const contextId = this.deps.turns.contextOf(taskId) ?? '';
    const running = this.deps.turns.cancel(taskId);
    this.deps.logger.info({ task_id: taskId, running }, 'task cancel requested');
    bus.publish(
      AgentEvent.statusUpdate({
        taskId,
        contextId,
        status: { state: TaskState.TASK_STATE_CANCELED, message: undefined, timestamp: new Date().toISOString() },
        metadata: undefined,
      }),
    );
  };

  private async answerWithMessage(ctx: RequestContext, bus: ExecutionEventBus): Promise<void> {
    const { contextId, taskId } = ctx;
    const question = userText(ctx.userMessage);
    const turn = this.deps.turns.begin(taskId, contextId);
    try {
      const answer = await this.deps.provider.respond({
        system: this.deps.systemPrompt(),
        history: this.deps.conversations.history(contextId),
        userText: question,
        signal: turn.signal,
      });
      this.deps.conversations.record(contextId, question, answer);
      // A message-only turn creates no task, so the reply carries no taskId (the caller could not look it up).
      bus.publish(AgentEvent.message(agentMessage(answer, contextId, '')));
      this.deps.turns.end(taskId, 'ok');
    } catch (err) {
      this.deps.turns.end(taskId, turn.canceled ? 'canceled' : 'failed');
      this.logFailure(taskId, err);
      // Still a Message, so `.result.parts[0].text` explains the failure; metadata lets programs tell it apart.
      bus.publish(AgentEvent.message(agentMessage(failureText(err), contextId, '', { error: true })));
    }
    bus.finished();
  }

  private async answerWithTask(ctx: RequestContext, bus: ExecutionEventBus): Promise<void> {
    const { contextId, taskId } = ctx;
    const question = userText(ctx.userMessage);
    const turn = this.deps.turns.begin(taskId, contextId);
    const now = () => new Date().toISOString();

    const task: Task = ctx.task
      ? { ...ctx.task, status: { state: TaskState.TASK_STATE_WORKING, message: undefined, timestamp: now() } }
      : {
          id: taskId,
          contextId,
          status: { state: TaskState.TASK_STATE_WORKING, message: undefined, timestamp: now() },
          artifacts: [],
          history: [ctx.userMessage],
          metadata: undefined,
        };
    bus.publish(AgentEvent.task(task));

    const artifactId = randomUUID();
    let chunks = 0;
    const publishChunk = (text: string, lastChunk: boolean) => {
      bus.publish(
        AgentEvent.artifactUpdate({
          taskId,
          contextId,
          artifact: {
            artifactId,
            name: ANSWER_ARTIFACT_NAME,
            description: '',
            parts: [textPart(text)],
            metadata: undefined,
            extensions: [],
          },
          append: chunks > 0,
          lastChunk,
          metadata: undefined,
        }),
      );
      chunks++;
    };

    try {
      const answer = await this.deps.provider.respond({
        system: this.deps.systemPrompt(),
        history: this.deps.conversations.history(contextId),
        userText: question,
        signal: turn.signal,
        onText: (delta) => {
          // After a cancel the stream is closed; late deltas from the aborting HTTP call must not reopen it.
          if (delta && !turn.signal.aborted) publishChunk(delta, false);
        },
      });
      if (turn.canceled) {
        this.deps.turns.end(taskId, 'canceled');
        return;
      }
      // Chunks are sent as they arrive, so the end of the artifact is marked by an empty closing chunk.
      if (chunks === 0) publishChunk(answer, true);
      else publishChunk('', true);
      this.deps.conversations.record(contextId, question, answer);
      const state = asksForInput(answer) ? TaskState.TASK_STATE_INPUT_REQUIRED : TaskState.TASK_STATE_COMPLETED;
      bus.publish(
        AgentEvent.statusUpdate({
          taskId,
          contextId,
          status: { state, message: agentMessage(answer, contextId, taskId), timestamp: now() },
          metadata: undefined,
        }),
      );
      this.deps.turns.end(taskId, 'ok');
    } catch (err) {
      if (turn.canceled) {
        this.deps.turns.end(taskId, 'canceled');
        return;
      }
      this.deps.turns.end(taskId, 'failed');
      this.logFailure(taskId, err);
      bus.publish(
        AgentEvent.statusUpdate({
          taskId,
          contextId,
          status: {
            state: TaskState.TASK_STATE_FAILED,
            message: agentMessage(failureText(err), contextId, taskId, { error: true }),
            timestamp: now(),
          },
          metadata: undefined,
        }),
      );
    }
  }

  private logFailure(taskId: string, err: unknown): void {
    const provider = this.deps.provider;
    this.deps.logger.warn(
      {
        task_id: taskId,
        provider: provider.name,
        model: provider.model,
        status: err instanceof ProviderError ? err.status : undefined,
        err: err instanceof Error ? err.message : String(err),
      },
      'turn failed',
    );
  }
}
