/**
 * Earlier turns per A2A contextId, in memory. Bounded twice (turns per context, number of contexts) because an
 * agent lives for days and a chatty caller must not grow it without limit. Lost on restart, by design: the
 * platform restarts agents freely and the A2A caller owns the conversation.
 */

export interface ChatMessage {
  role: 'user' | 'assistant';
  text: string;
}

export interface ConversationLimits {
  /** Messages (not turns) kept per context. */
  maxMessages: number;
  maxContexts: number;
  /** Characters kept per context, so a few huge pastes cannot blow the model's context window. */
  maxChars: number;
}

export const DEFAULT_CONVERSATION_LIMITS: ConversationLimits = { maxMessages: 40, maxContexts: 200, maxChars: 60_000 };

export class ConversationStore {
  private readonly contexts = new Map<string, ChatMessage[]>();

  constructor(private readonly limits: ConversationLimits = DEFAULT_CONVERSATION_LIMITS) {}

  history(contextId: string): ChatMessage[] {
    return [...(this.contexts.get(contextId) ?? [])];
  }

  /** Stores a completed exchange. Only whole pairs are stored so the history always alternates user/assistant. */
  record(contextId: string, userText: string, assistantText: string): void {
    const messages = this.contexts.get(contextId) ?? [];
    // Re-inserting moves the context to the back of the Map: eviction below is least-recently-used.
    this.contexts.delete(contextId);
    messages.push({ role: 'user', text: userText }, { role: 'assistant', text: assistantText });
    while (messages.length > this.limits.maxMessages || (messages.length > 2 && chars(messages) > this.limits.maxChars)) {
      messages.splice(0, 2);
    }
    this.contexts.set(contextId, messages);
    while (this.contexts.size > this.limits.maxContexts) {
      const oldest = this.contexts.keys().next().value;
      if (oldest === undefined) break;
      this.contexts.delete(oldest);
    }
  }

  get size(): number {
    return this.contexts.size;
  }
}

function chars(messages: ChatMessage[]): number {
  return messages.reduce((n, m) => n + m.text.length, 0);
}
