import { EventEmitter } from 'node:events';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { readBody, TestServer } from './http.js';

/** What the fake model does for one request. `hold` delays the last stream chunk, or the whole JSON reply. */
export type ModelStep =
  | { text: string; chunks?: string[]; hold?: Promise<void> }
  | { toolCall: { id: string; name: string; input?: Record<string, unknown> } }
  | { error: { status: number; message: string } };

export interface ModelRequest {
  body: any;
  headers: IncomingMessage['headers'];
  /** True once the client hung up before the response was complete (a cancel reached the model call). */
  aborted: boolean;
}

abstract class FakeModelServer {
  readonly requests: ModelRequest[] = [];
  script: (body: any, index: number) => ModelStep = () => ({ text: 'ok' });
  protected readonly events = new EventEmitter();
  private readonly http: TestServer;

  constructor(private readonly path: string) {
    this.events.setMaxListeners(100);
    this.http = new TestServer(async (req, res) => {
      if (req.method !== 'POST' || req.url !== this.path) {
        res.writeHead(404, { 'content-type': 'application/json' }).end('{"error":{"message":"not found"}}');
        return;
      }
      const body = JSON.parse(await readBody(req));
      const record: ModelRequest = { body, headers: req.headers, aborted: false };
      const index = this.requests.length;
      this.requests.push(record);
      res.on('close', () => {
        if (!res.writableFinished) {
          record.aborted = true;
          this.events.emit('aborted');
        }
      });
      this.events.emit('request');
      const step = this.script(body, index);
      try {
        await this.respond(step, body, res);
      } catch {
        if (!res.writableEnded) res.destroy();
      }
    });
  }

  protected abstract respond(step: ModelStep, body: any, res: ServerResponse): Promise<void>;

  listen(): Promise<string> {
    return this.http.listen(0);
  }

  get url(): string {
    return this.http.url;
  }

  close(): Promise<void> {
    return this.http.close();
  }

  waitForAbort(timeoutMs = 10_000): Promise<void> {
    return this.waitUntil('aborted', () => this.requests.some((r) => r.aborted), timeoutMs);
  }

  waitForRequests(count: number, timeoutMs = 10_000): Promise<void> {
    return this.waitUntil('request', () => this.requests.length >= count, timeoutMs);
  }

  private waitUntil(event: string, done: () => boolean, timeoutMs: number): Promise<void> {
    return new Promise((resolve, reject) => {
      const check = () => {
        if (done()) {
          cleanup();
          resolve();
        }
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(new Error(`fake model: timed out waiting for ${event}`));
      }, timeoutMs);
      const cleanup = () => {
        clearTimeout(timer);
        this.events.off(event, check);
      };
      this.events.on(event, check);
      check();
    });
  }
}

function sse(res: ServerResponse, data: unknown, event?: string): void {
  res.write(`${event ? `event: ${event}\n` : ''}data: ${typeof data === 'string' ? data : JSON.stringify(data)}\n\n`);
}

/** Writes all chunks but the last, waits for the hold (if any), then writes the last. */
async function writeChunks(chunks: string[], hold: Promise<void> | undefined, write: (chunk: string) => void): Promise<void> {
  for (let i = 0; i < chunks.length; i++) {
    if (i === chunks.length - 1 && hold) await hold;
    write(chunks[i]!);
  }
}

/** OpenAI Chat Completions: `POST /v1/chat/completions`, JSON or `stream: true` SSE. */
export class FakeOpenAI extends FakeModelServer {
  constructor() {
    super('/v1/chat/completions');
  }

  protected async respond(step: ModelStep, body: any, res: ServerResponse): Promise<void> {
    const base = { id: 'chatcmpl-test', created: 1_700_000_000, model: body.model };
    if ('error' in step) {
      res.writeHead(step.error.status, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ error: { message: step.error.message, type: 'invalid_request_error', code: null } }));
      return;
    }
    if (!body.stream) {
      if ('hold' in step && step.hold) await step.hold;
      const message =
        'toolCall' in step
          ? {
              role: 'assistant',
              content: null,
              tool_calls: [
                { id: step.toolCall.id, type: 'function', function: { name: step.toolCall.name, arguments: JSON.stringify(step.toolCall.input ?? {}) } },
              ],
            }
          : { role: 'assistant', content: step.text };
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(
        JSON.stringify({
          ...base,
          object: 'chat.completion',
          choices: [{ index: 0, message, finish_reason: 'toolCall' in step ? 'tool_calls' : 'stop', logprobs: null }],
          usage: { prompt_tokens: 1, completion_tokens: 1, total_tokens: 2 },
        }),
      );
      return;
    }
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
    const chunk = (delta: unknown, finish: string | null = null) =>
      sse(res, { ...base, object: 'chat.completion.chunk', choices: [{ index: 0, delta, finish_reason: finish }] });
    if ('toolCall' in step) {
      const { id, name, input } = step.toolCall;
      chunk({ role: 'assistant', tool_calls: [{ index: 0, id, type: 'function', function: { name, arguments: '' } }] });
      const args = JSON.stringify(input ?? {});
      const half = Math.floor(args.length / 2);
      chunk({ tool_calls: [{ index: 0, function: { arguments: args.slice(0, half) } }] });
      chunk({ tool_calls: [{ index: 0, function: { arguments: args.slice(half) } }] });
      chunk({}, 'tool_calls');
    } else {
      chunk({ role: 'assistant', content: '' });
      await writeChunks(step.chunks ?? [step.text], step.hold, (c) => chunk({ content: c }));
      chunk({}, 'stop');
    }
    sse(res, '[DONE]');
    res.end();
  }
}

/** Anthropic Messages: `POST /v1/messages`, JSON or `stream: true` SSE with the real event sequence. */
export class FakeAnthropic extends FakeModelServer {
  constructor() {
    super('/v1/messages');
  }

  protected async respond(step: ModelStep, body: any, res: ServerResponse): Promise<void> {
    if ('error' in step) {
      res.writeHead(step.error.status, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ type: 'error', error: { type: 'authentication_error', message: step.error.message } }));
      return;
    }
    const isTool = 'toolCall' in step;
    const usage = { input_tokens: 1, output_tokens: 1 };
    const message = (content: unknown[], stop: string | null) => ({
      id: 'msg_test',
      type: 'message',
      role: 'assistant',
      model: body.model,
      content,
      stop_reason: stop,
      stop_sequence: null,
      usage,
    });
    if (!body.stream) {
      if ('hold' in step && step.hold) await step.hold;
      const content = isTool
        ? [{ type: 'tool_use', id: step.toolCall.id, name: step.toolCall.name, input: step.toolCall.input ?? {} }]
        : [{ type: 'text', text: step.text }];
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify(message(content, isTool ? 'tool_use' : 'end_turn')));
      return;
    }
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
    const ev = (type: string, data: Record<string, unknown>) => sse(res, { type, ...data }, type);
    ev('message_start', { message: message([], null) });
    if (isTool) {
      ev('content_block_start', { index: 0, content_block: { type: 'tool_use', id: step.toolCall.id, name: step.toolCall.name, input: {} } });
      ev('content_block_delta', { index: 0, delta: { type: 'input_json_delta', partial_json: JSON.stringify(step.toolCall.input ?? {}) } });
      ev('content_block_stop', { index: 0 });
      ev('message_delta', { delta: { stop_reason: 'tool_use', stop_sequence: null }, usage: { output_tokens: 1 } });
    } else {
      ev('content_block_start', { index: 0, content_block: { type: 'text', text: '' } });
      await writeChunks(step.chunks ?? [step.text], step.hold, (c) =>
        ev('content_block_delta', { index: 0, delta: { type: 'text_delta', text: c } }),
      );
      ev('content_block_stop', { index: 0 });
      ev('message_delta', { delta: { stop_reason: 'end_turn', stop_sequence: null }, usage: { output_tokens: 1 } });
    }
    ev('message_stop', {});
    res.end();
  }
}
