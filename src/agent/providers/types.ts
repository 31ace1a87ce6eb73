import type { ChatMessage } from '../conversation.js';

export interface RespondRequest {
  /** Describes the workspace; providers without a model (the built-in responder) ignore it. */
  system: string;
  /** Earlier turns of the same A2A context, oldest first, alternating user/assistant. */
  history: ChatMessage[];
  userText: string;
  /** Aborted on tasks/cancel and on shutdown; the provider must stop its HTTP call. */
  signal: AbortSignal;
  /** Set for streaming turns: receives answer text as it is produced. */
  onText?: (delta: string) => void;
}

export interface ChatProvider {
  /** `openai`, `anthropic` or `builtin`; logged and shown on the card, never a secret. */
  readonly name: string;
  readonly model: string | null;
  /** Resolves with the whole answer (for streaming turns: everything passed to onText, concatenated). */
  respond(request: RespondRequest): Promise<string>;
}

/** A model call that failed for a reason worth telling the caller about (the message is safe to show). */
export class ProviderError extends Error {
  constructor(
    readonly provider: string,
    message: string,
    readonly status?: number,
  ) {
    super(message);
    this.name = 'ProviderError';
  }
}

/** Removes a secret from text that came back from a provider (some echo a masked or even the full key). */
export function redact(text: string, secret: string | undefined): string {
  if (!secret || secret.length < 4) return text;
  return text.split(secret).join('[redacted]');
}
