import OpenAI from 'openai';
import type {
  ChatCompletionCreateParamsBase,
  ChatCompletionMessageFunctionToolCall,
  ChatCompletionMessageParam,
  ChatCompletionTool,
} from 'openai/resources/chat/completions';
import { MAX_TOOL_ROUNDS, runTool, TOOLS } from '../tools.js';
import type { PlatformConfig } from '../config.js';
import type { Workspace } from '../workspace.js';
import { type ChatProvider, providerFailure, type RespondRequest } from './types.js';

export interface OpenAIProviderOptions {
  apiKey: string;
  /** Any OpenAI-compatible endpoint (vLLM, Ollama, LiteLLM, a test double); the SDK default otherwise. */
  baseUrl?: string;
  model: string;
}

const TOOL_SPECS: ChatCompletionTool[] = TOOLS.map((t) => ({
  type: 'function',
  function: { name: t.name, description: t.description, parameters: t.parameters },
}));

interface PendingCall {
  id: string;
  name: string;
  args: string;
}

/** OpenAI Chat Completions (and every server that speaks it), with function calling for the built-in tools. */
export class OpenAIProvider implements ChatProvider {
  readonly name = 'openai';
  readonly model: string;
  private readonly client: OpenAI;
  private readonly apiKey: string;

  constructor(
    options: OpenAIProviderOptions,
    private readonly workspace: Workspace,
    private readonly platform: PlatformConfig | null = null,
  ) {
    this.model = options.model;
    this.apiKey = options.apiKey;
    // One retry only: the caller is waiting on an A2A request, and the SDK's default back-off can take a minute.
    this.client = new OpenAI({ apiKey: options.apiKey, baseURL: options.baseUrl, maxRetries: 1, timeout: 120_000 });
  }

  async respond(request: RespondRequest): Promise<string> {
    const messages: ChatCompletionMessageParam[] = [
      { role: 'system', content: request.system },
      ...request.history.map((m): ChatCompletionMessageParam => ({ role: m.role, content: m.text })),
      { role: 'user', content: request.userText },
    ];
    let streamed = '';
    for (let round = 0; ; round++) {
      // The last round goes out without tools, which forces the model to answer in text.
      const withTools = round < MAX_TOOL_ROUNDS;
      const params: ChatCompletionCreateParamsBase = { model: this.model, messages, ...(withTools ? { tools: TOOL_SPECS } : {}) };
      let text: string;
      let calls: PendingCall[];
      try {
        if (request.onText) {
          ({ text, calls } = await this.streamRound(params, request.signal, request.onText));
          streamed += text;
        } else {
          ({ text, calls } = await this.completeRound(params, request.signal));
        }
      } catch (err) {
        throw this.describe(err, request.signal);
      }
      if (calls.length === 0 || !withTools) return request.onText ? streamed : text;
      messages.push({
        role: 'assistant',
        content: text || null,
        tool_calls: calls.map((c) => ({ id: c.id, type: 'function', function: { name: c.name, arguments: c.args || '{}' } })),
      });
      for (const call of calls) {
        messages.push({ role: 'tool', tool_call_id: call.id, content: await runTool(call.name, call.args, { workspace: this.workspace, platform: this.platform, signal: request.signal }) });
      }
    }
  }

  private async completeRound(params: ChatCompletionCreateParamsBase, signal: AbortSignal) {
    const completion = await this.client.chat.completions.create({ ...params, stream: false }, { signal });
    const message = completion.choices[0]?.message;
    const calls = (message?.tool_calls ?? [])
      .filter((c): c is ChatCompletionMessageFunctionToolCall => c.type === 'function')
      .map((c) => ({ id: c.id, name: c.function.name, args: c.function.arguments }));
    return { text: message?.content ?? '', calls };
  }

  private async streamRound(params: ChatCompletionCreateParamsBase, signal: AbortSignal, onText: (delta: string) => void) {
    const stream = await this.client.chat.completions.create({ ...params, stream: true }, { signal });
    let text = '';
    const calls: PendingCall[] = [];
    for await (const chunk of stream) {
      const delta = chunk.choices[0]?.delta;
      if (!delta) continue;
      if (delta.content) {
        text += delta.content;
        onText(delta.content);
      }
      // Tool calls arrive in fragments keyed by index: the id and name first, the JSON arguments in pieces.
      for (const fragment of delta.tool_calls ?? []) {
        const call = (calls[fragment.index] ??= { id: '', name: '', args: '' });
        if (fragment.id) call.id = fragment.id;
        if (fragment.function?.name) call.name += fragment.function.name;
        if (fragment.function?.arguments) call.args += fragment.function.arguments;
      }
    }
    return { text, calls: calls.filter(Boolean) };
  }

  private describe(err: unknown, signal: AbortSignal): unknown {
    return providerFailure(this.name, this.apiKey, err, signal, OpenAI);
  }

}
