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

/** The error classes both vendor SDKs share (both are generated the same way). */
interface SdkErrors {
  APIUserAbortError: abstract new (...args: any[]) => Error;
  APIConnectionError: abstract new (...args: any[]) => Error;
  APIError: abstract new (...args: any[]) => Error & { status?: unknown };
}

/**
 * What a failed model call becomes: an abort passes through untouched (the caller's decision, not a provider
 * failure); anything else is a ProviderError whose message has the API key redacted — in this one place.
 */
export function providerFailure(
  provider: string,
  apiKey: string | undefined,
  err: unknown,
  signal: AbortSignal,
  sdk: SdkErrors,
  apiMessage: (err: InstanceType<SdkErrors['APIError']>) => string = (e) => e.message,
): unknown {
  if (signal.aborted || err instanceof sdk.APIUserAbortError) return signal.reason ?? err;
  if (err instanceof sdk.APIConnectionError) {
    const cause = err.cause instanceof Error ? `: ${err.cause.message}` : '';
    return new ProviderError(provider, redact(`could not reach the model endpoint (${err.message}${cause})`, apiKey));
  }
  if (err instanceof sdk.APIError) {
    const status = typeof err.status === 'number' ? err.status : undefined;
    return new ProviderError(provider, redact(apiMessage(err), apiKey), status);
  }
  return new ProviderError(provider, redact(err instanceof Error ? err.message : String(err), apiKey));
}
