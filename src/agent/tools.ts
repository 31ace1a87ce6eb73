import type { Workspace } from './workspace.js';

/**
 * Built-in tools the model may call. Each provider adapts the same definition to its wire format (OpenAI function
 * calling, Anthropic tool_use), so adding a tool here makes it available everywhere.
 */

/** Upper bound on model↔tool round trips per turn, so a model that keeps calling tools cannot loop forever. */
export const MAX_TOOL_ROUNDS = 4;

export interface ToolDefinition {
  name: string;
  description: string;
  /** JSON Schema of the arguments object. */
  parameters: { type: 'object'; properties: Record<string, unknown>; required?: string[]; additionalProperties?: boolean };
}

export const WORKSPACE_INFO_TOOL: ToolDefinition = {
  name: 'get_workspace_info',
  description:
    'Returns live facts about the workspace this agent runs in: id, name, role, region, tier, runtime and uptime in seconds.',
  parameters: { type: 'object', properties: {}, additionalProperties: false },
};

export const TOOLS: ToolDefinition[] = [WORKSPACE_INFO_TOOL];

/**
 * Runs a tool call and returns the text handed back to the model. Errors become a JSON error object rather than
 * an exception: the model can recover from "unknown tool", a failed turn cannot.
 */
export function runTool(name: string, rawArgs: unknown, workspace: Workspace): string {
  if (typeof rawArgs === 'string' && rawArgs.trim() !== '') {
    try {
      JSON.parse(rawArgs);
    } catch {
      return JSON.stringify({ error: `arguments for ${name} are not valid JSON` });
    }
  }
  switch (name) {
    case WORKSPACE_INFO_TOOL.name: {
      const s = workspace.snapshot();
      return JSON.stringify({
        id: s.id,
        name: s.name,
        role: s.role,
        region: s.region,
        tier: s.tier,
        runtime: s.runtime,
        uptime_s: s.uptime_s,
      });
    }
    default:
      return JSON.stringify({ error: `unknown tool: ${name}` });
  }
}
