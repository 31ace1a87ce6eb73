import type { ModelConfig, PlatformConfig } from '../config.js';
import { BuiltinResponder } from '../responder.js';
import type { Workspace } from '../workspace.js';
import { AnthropicProvider } from './anthropic.js';
import { OpenAIProvider } from './openai.js';
import type { ChatProvider } from './types.js';

export type { ChatProvider, RespondRequest } from './types.js';
export { ProviderError } from './types.js';

export function createProvider(model: ModelConfig | null, workspace: Workspace, platform: PlatformConfig | null = null): ChatProvider {
  if (!model) return new BuiltinResponder(workspace);
  switch (model.provider) {
    case 'openai':
      return new OpenAIProvider(model, workspace, platform);
    case 'anthropic':
      return new AnthropicProvider(model, workspace, platform);
  }
}

/** The system prompt: who the agent is, so a model can answer "where are you running?" without a tool call. */
export function systemPrompt(workspace: Workspace): string {
  const s = workspace.snapshot();
  const role = s.role ? `Your role: ${s.role}` : 'No role has been set for this workspace.';
  return [
    `You are ${s.name}, the AI agent of a Molecule workspace (id ${s.id}).`,
    role,
    `You run in region ${s.region}, on tier ${s.tier}, with the ${s.runtime} runtime.`,
    'Other agents and people reach you over the A2A protocol; answer them directly and concisely.',
    'Call the get_workspace_info tool for live facts about this workspace, such as its uptime.',
    'Call list_my_team to see the agents you can reach (parent, children, siblings), and send_message_to_agent to ask one of them.',
  ].join('\n');
}
