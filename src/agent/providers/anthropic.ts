import Anthropic from '@anthropic-ai/sdk';
import type { ContentBlockParam, Message, MessageParam, Tool, ToolResultBlockParam } from '@anthropic-ai/sdk/resources/messages';
import { MAX_TOOL_ROUNDS, runTool, TOOLS } from '../tools.js';
import type { PlatformConfig } from '../config.js';
import type { Workspace } from '../workspace.js';
import { type ChatProvider, providerFailure, type RespondRequest } from './types.js';

export interface AnthropicProviderOptions {
  apiKey: string;
  baseUrl?: string;
  model: string;
  maxTokens?: number;
}

const TOOL_SPECS: Tool[] = TOOLS.map((t) => ({
  name: t.name,
  description: t.description,
  input_schema: { type: 'object', properties: t.parameters.properties, required: t.parameters.required ?? [] },
}));

/** Anthropic Messages API, with tool_use for the built-in tools. */
export class AnthropicProvider implements ChatProvider {
  readonly name = 'anthropic';
  readonly model: string;
  private readonly client: Anthropic;
  private readonly apiKey: string;
  private readonly maxTokens: number;

  constructor(
    options: AnthropicProviderOptions,
    private readonly workspace: Workspace,
    private readonly platform: PlatformConfig | null = null,
  ) {
    this.model = options.model;
    this.apiKey = options.apiKey;
    this.maxTokens = options.maxTokens ?? 2048;
    // baseURL null (not undefined) keeps the SDK from reading ANTHROPIC_BASE_URL behind our back; config already did.
    this.client = new Anthropic({ apiKey: options.apiKey, baseURL: options.baseUrl ?? null, maxRetries: 1, timeout: 120_000 });
  }

  async respond(request: RespondRequest): Promise<string> {
    const messages: MessageParam[] = [
      ...request.history.map((m): MessageParam => ({ role: m.role, content: m.text })),
      { role: 'user', content: request.userText },
    ];
    let answer = '';
    for (let round = 0; ; round++) {
      // The last round goes out without tools, which forces a text answer.
      const withTools = round < MAX_TOOL_ROUNDS;
      const params = {
        model: this.model,
        max_tokens: this.maxTokens,
        system: request.system,
        messages,
        ...(withTools ? { tools: TOOL_SPECS } : {}),
      };
      let message: Message;
      try {
        if (request.onText) {
          const onText = request.onText;
          const stream = this.client.messages.stream(params, { signal: request.signal });
          stream.on('text', (delta) => onText(delta));
          message = await stream.finalMessage();
        } else {
          message = await this.client.messages.create(params, { signal: request.signal });
        }
      } catch (err) {
        throw this.describe(err, request.signal);
      }

      const text = message.content.flatMap((b) => (b.type === 'text' ? [b.text] : [])).join('');
      // A streaming caller has already seen the text of every round; a blocking caller gets the final round only.
      answer = request.onText ? answer + text : text;
      const toolUses = message.content.flatMap((b) => (b.type === 'tool_use' ? [b] : []));
      if (message.stop_reason !== 'tool_use' || toolUses.length === 0 || !withTools) return answer;

      const assistantContent: ContentBlockParam[] = message.content.flatMap((b): ContentBlockParam[] => {
        if (b.type === 'text') return [{ type: 'text', text: b.text }];
        if (b.type === 'tool_use') return [{ type: 'tool_use', id: b.id, name: b.name, input: b.input }];
        return [];
      });
      messages.push({ role: 'assistant', content: assistantContent });
      const results: ToolResultBlockParam[] = [];
      for (const t of toolUses) {
        const content = await runTool(t.name, JSON.stringify(t.input ?? {}), { workspace: this.workspace, platform: this.platform, signal: request.signal });
        results.push({ type: 'tool_result', tool_use_id: t.id, content });
      }
      messages.push({ role: 'user', content: results });
    }
  }

  private describe(err: unknown, signal: AbortSignal): unknown {
    return providerFailure(this.name, this.apiKey, err, signal, Anthropic, (e) => {
      // The SDK's message is the raw JSON body; the nested error.message is the sentence worth showing.
      const api = e as InstanceType<typeof Anthropic.APIError>;
      const body = api.error as { error?: { message?: unknown } } | undefined;
      const detail = typeof body?.error?.message === 'string' ? body.error.message : api.message;
      return typeof api.status === 'number' && !detail.startsWith(String(api.status)) ? `${api.status} ${detail}` : detail;
    });
  }

}
