import { Role, type Message } from '@a2a-js/sdk';
import { ClientFactory, ClientFactoryOptions, DefaultAgentCardResolver, JsonRpcTransportFactory } from '@a2a-js/sdk/client';
import type { PlatformConfig } from './config.js';
import type { Workspace } from './workspace.js';

/**
 * Built-in tools the model may call. Each provider adapts the same definition to its wire format (OpenAI function
 * calling, Anthropic tool_use), so adding a tool here makes it available everywhere.
 */

/** Upper bound on model↔tool round trips per turn, so a model that keeps calling tools cannot loop forever. */
export const MAX_TOOL_ROUNDS = 4;

/** How long one agent-to-agent call (card + message) may take before the tool gives up. */
export const AGENT_CALL_TIMEOUT_MS = 60_000;
/** How long the catalog lookup may take. */
export const CATALOG_TIMEOUT_MS = 15_000;
/** The longest message the model may send to another agent. */
export const MAX_AGENT_MESSAGE_CHARS = 16_000;

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

export const LIST_TEAM_TOOL: ToolDefinition = {
  name: 'list_my_team',
  description:
    'Lists the agents this agent may talk to (its parent, children and siblings, and itself): name, workspace_id, relation, status, description and skills.',
  parameters: { type: 'object', properties: {}, additionalProperties: false },
};

export const SEND_MESSAGE_TOOL: ToolDefinition = {
  name: 'send_message_to_agent',
  description:
    'Sends a message to another agent of the team (by workspace_id, or by agent name as listed by list_my_team) and returns its reply. ' +
    'Only agents listed by list_my_team can be reached; this agent cannot message itself.',
  parameters: {
    type: 'object',
    properties: {
      workspace_id: { type: 'string', description: 'The workspace id of the agent to message (preferred).' },
      agent: { type: 'string', description: 'The agent name, when the workspace id is not known.' },
      text: { type: 'string', description: 'The message to send.' },
    },
    required: ['text'],
    additionalProperties: false,
  },
};

export const TOOLS: ToolDefinition[] = [WORKSPACE_INFO_TOOL, LIST_TEAM_TOOL, SEND_MESSAGE_TOOL];

/** What a tool call may use besides its arguments. */
export interface ToolContext {
  workspace: Workspace;
  /** The platform and this workspace's token; null when the agent runs without a platform. */
  platform: PlatformConfig | null;
  /** The turn's signal: cancelling the turn cancels a call to another agent. */
  signal?: AbortSignal;
  /** Defaults to AGENT_CALL_TIMEOUT_MS. */
  agentCallTimeoutMs?: number;
  fetchImpl?: typeof fetch;
}

/** A tool failure handed back to the model as text. */
class ToolError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

const errorText = (code: string, message: string, extra: Record<string, unknown> = {}) =>
  JSON.stringify({ error: message, code, ...extra });

/**
 * Runs a tool call and returns the text handed back to the model. Errors become a JSON error object rather than
 * an exception: the model can recover from "unknown tool", a failed turn cannot. Only the turn's own abort
 * propagates (the turn is over anyway).
 */
export async function runTool(name: string, rawArgs: unknown, ctx: ToolContext): Promise<string> {
  let args: unknown = {};
  if (typeof rawArgs === 'string' && rawArgs.trim() !== '') {
    try {
      args = JSON.parse(rawArgs);
    } catch {
      return errorText('invalid_arguments', `arguments for ${name} are not valid JSON`);
    }
  } else if (rawArgs && typeof rawArgs === 'object') {
    args = rawArgs;
  }
  try {
    switch (name) {
      case WORKSPACE_INFO_TOOL.name: {
        const s = ctx.workspace.snapshot();
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
      case LIST_TEAM_TOOL.name:
        return JSON.stringify({ agents: await listTeam(ctx) });
      case SEND_MESSAGE_TOOL.name: {
        const parsed = parseSendArgs(args);
        if ('error' in parsed) return errorText('invalid_arguments', parsed.error);
        return await sendToAgent(parsed, ctx);
      }
      default:
        return errorText('unknown_tool', `unknown tool: ${name}`);
    }
  } catch (err) {
    if (ctx.signal?.aborted) throw ctx.signal.reason ?? err;
    if (err instanceof ToolError) return errorText(err.code, err.message);
    return errorText('tool_failed', err instanceof Error ? err.message : String(err));
  }
}

export interface SendArgs {
  workspace_id?: string;
  agent?: string;
  text: string;
}

const WORKSPACE_ID = /^[A-Za-z0-9_-]{1,64}$/;

/** Validates send_message_to_agent's arguments; the message says what is wrong, for the model to fix. */
export function parseSendArgs(args: unknown): SendArgs | { error: string } {
  if (!args || typeof args !== 'object' || Array.isArray(args)) return { error: 'arguments must be a JSON object' };
  const a = args as Record<string, unknown>;
  const unknown = Object.keys(a).filter((k) => !['workspace_id', 'agent', 'text'].includes(k));
  if (unknown.length) return { error: `unknown argument(s): ${unknown.join(', ')}` };
  if (typeof a.text !== 'string' || a.text.trim() === '') return { error: 'text is required and must be a non-empty string' };
  if (a.text.length > MAX_AGENT_MESSAGE_CHARS) return { error: `text is longer than ${MAX_AGENT_MESSAGE_CHARS} characters` };
  const id = a.workspace_id === undefined || a.workspace_id === null || a.workspace_id === '' ? undefined : a.workspace_id;
  const agent = a.agent === undefined || a.agent === null || a.agent === '' ? undefined : a.agent;
  if (id !== undefined && (typeof id !== 'string' || !WORKSPACE_ID.test(id))) return { error: 'workspace_id must be a workspace id as listed by list_my_team' };
  if (agent !== undefined && (typeof agent !== 'string' || agent.trim() === '')) return { error: 'agent must be a non-empty string' };
  if (id === undefined && agent === undefined) return { error: 'give workspace_id (or agent, the agent name) to say who to message' };
  return { ...(id !== undefined ? { workspace_id: id as string } : {}), ...(agent !== undefined ? { agent: (agent as string).trim() } : {}), text: a.text };
}

export type Relation = 'self' | 'parent' | 'child' | 'sibling' | 'other';

export interface TeamMember {
  name: string;
  workspace_id: string;
  relation: Relation;
  status: string;
  description: string;
  skills: { id?: string; name?: string; description?: string }[];
}

interface CatalogEntry {
  workspace_id: string;
  workspace_name?: string;
  parent_id?: string | null;
  status?: string;
  name?: string;
  description?: string;
  skills?: { id?: string; name?: string; description?: string }[];
  url?: string;
  card_url?: string;
}

function requirePlatform(ctx: ToolContext): PlatformConfig {
  if (!ctx.platform) throw new ToolError('no_platform', 'this agent is not connected to a platform, so it has no team to reach');
  return ctx.platform;
}

/** Adds the workspace token as bearer to every request, bounded by the given signal. */
function authorizedFetch(platform: PlatformConfig, signal: AbortSignal, base: typeof fetch = fetch): typeof fetch {
  return (input, init) => {
    const headers = new Headers(init?.headers);
    headers.set('authorization', `Bearer ${platform.token}`);
    const s = init?.signal ? AbortSignal.any([init.signal, signal]) : signal;
    return base(input, { ...init, headers, signal: s });
  };
}

function boundedSignal(ctx: ToolContext, timeoutMs: number): AbortSignal {
  const timeout = AbortSignal.timeout(timeoutMs);
  return ctx.signal ? AbortSignal.any([ctx.signal, timeout]) : timeout;
}

async function fetchCatalog(ctx: ToolContext): Promise<CatalogEntry[]> {
  const platform = requirePlatform(ctx);
  const doFetch = authorizedFetch(platform, boundedSignal(ctx, CATALOG_TIMEOUT_MS), ctx.fetchImpl);
  let res: Response;
  try {
    res = await doFetch(`${platform.url}/agents`, { headers: { accept: 'application/json' } });
  } catch (err) {
    if (ctx.signal?.aborted) throw err;
    throw new ToolError('platform_unreachable', `could not reach the platform: ${err instanceof Error ? err.message : String(err)}`);
  }
  const text = await res.text();
  let body: any;
  try {
    body = JSON.parse(text);
  } catch {
    body = undefined;
  }
  if (!res.ok) throw new ToolError(typeof body?.code === 'string' ? body.code : `http_${res.status}`, `the platform refused the catalog (HTTP ${res.status})`);
  if (!body || !Array.isArray(body.agents)) throw new ToolError('bad_catalog', 'the platform answered the catalog with an unexpected body');
  return body.agents.filter((a: any) => a && typeof a.workspace_id === 'string');
}

/** The relation of `entry` to this workspace, from parent ids alone. */
export function relationOf(entry: { workspace_id: string; parent_id?: string | null }, selfId: string, selfParent: string | null | undefined): Relation {
  if (entry.workspace_id === selfId) return 'self';
  if (selfParent && entry.workspace_id === selfParent) return 'parent';
  if (entry.parent_id === selfId) return 'child';
  if ((entry.parent_id ?? null) === (selfParent ?? null)) return 'sibling';
  return 'other';
}

export async function listTeam(ctx: ToolContext): Promise<TeamMember[]> {
  const catalog = await fetchCatalog(ctx);
  const selfId = ctx.workspace.identity.id;
  const self = catalog.find((e) => e.workspace_id === selfId);
  const selfParent = self ? (self.parent_id ?? null) : undefined;
  return catalog.map((e) => ({
    name: e.workspace_name ?? e.name ?? '',
    workspace_id: e.workspace_id,
    relation: relationOf(e, selfId, selfParent),
    status: e.status ?? 'unknown',
    description: e.description ?? '',
    skills: (e.skills ?? []).map((s) => ({ id: s.id, name: s.name, description: s.description })),
  }));
}

/** Resolves an agent name to a workspace id through the catalog (workspace name or card name, case-insensitive). */
async function resolveName(name: string, ctx: ToolContext): Promise<string> {
  const catalog = await fetchCatalog(ctx);
  const want = name.toLowerCase();
  const hits = catalog.filter((e) => e.workspace_name?.toLowerCase() === want || e.name?.toLowerCase() === want || e.workspace_id === name);
  const ids = [...new Set(hits.map((e) => e.workspace_id))];
  if (ids.length === 0) throw new ToolError('agent_not_found', `no agent named "${name}" in this team; call list_my_team for the names`);
  if (ids.length > 1) throw new ToolError('ambiguous_agent', `several agents are named "${name}"; give workspace_id instead (${ids.join(', ')})`);
  return ids[0]!;
}

/** A user's text message in the SDK's (v1) form, as the official client sends it. */
export function userMessage(text: string): Message {
  return {
    messageId: crypto.randomUUID(),
    contextId: '',
    taskId: '',
    role: Role.ROLE_USER,
    parts: [{ content: { $case: 'text', value: text }, mediaType: 'text/plain', filename: '', metadata: undefined }],
    metadata: undefined,
    extensions: [],
    referenceTaskIds: [],
  };
}

/** Text of a message, a task (status message and artifacts) or a send result wrapping either. */
export function replyText(result: any): string {
  const parts = (ps: any[] | undefined) => (ps ?? []).map((p: any) => (p?.content?.$case === 'text' ? p.content.value : typeof p?.text === 'string' ? p.text : '')).join('');
  if (!result || typeof result !== 'object') return '';
  if (result.payload && typeof result.payload === 'object' && 'value' in result.payload) return replyText(result.payload.value);
  if (Array.isArray(result.parts)) return parts(result.parts);
  const artifacts = (result.artifacts ?? []).map((a: any) => parts(a?.parts)).filter(Boolean).join('\n');
  return artifacts || parts(result.status?.message?.parts);
}

async function sendToAgent(args: SendArgs, ctx: ToolContext): Promise<string> {
  const platform = requirePlatform(ctx);
  const selfId = ctx.workspace.identity.id;
  const targetId = args.workspace_id ?? (await resolveName(args.agent!, ctx));
  if (targetId === selfId) throw new ToolError('self_message', 'an agent cannot send a message to itself');

  const timeoutMs = ctx.agentCallTimeoutMs ?? AGENT_CALL_TIMEOUT_MS;
  const signal = boundedSignal(ctx, timeoutMs);
  // Remember the last refused HTTP answer: the platform's REST errors (403 a2a_forbidden on the card) carry the code.
  let refused: { status: number; code?: string; message?: string } | undefined;
  const base = authorizedFetch(platform, signal, ctx.fetchImpl);
  const fetchImpl: typeof fetch = async (input, init) => {
    const res = await base(input, init);
    if (!res.ok) {
      let body: any;
      try {
        body = await res.clone().json();
      } catch {
        body = undefined;
      }
      refused = { status: res.status, code: typeof body?.code === 'string' ? body.code : undefined, message: typeof body?.message === 'string' ? body.message : undefined };
    }
    return res;
  };
  const factory = new ClientFactory(
    ClientFactoryOptions.createFrom(ClientFactoryOptions.default, {
      transports: [new JsonRpcTransportFactory({ fetchImpl })],
      cardResolver: new DefaultAgentCardResolver({ fetchImpl }),
    }),
  );
  const a2aUrl = `${platform.url}/workspaces/${encodeURIComponent(targetId)}/a2a`;
  try {
    const client = await factory.createFromUrl(a2aUrl);
    const result = await client.sendMessage({ tenant: '', message: userMessage(args.text), configuration: undefined, metadata: undefined }, { signal });
    const r: any = result;
    const state = r?.status?.state;
    const text = replyText(result);
    return JSON.stringify({ workspace_id: targetId, reply: text, ...(state !== undefined && typeof r?.id === 'string' ? { task_id: r.id, state } : {}) });
  } catch (err) {
    if (ctx.signal?.aborted) throw ctx.signal.reason ?? err;
    if (signal.aborted) return errorText('timeout', `the agent did not answer within ${Math.round(timeoutMs / 1000)} s`, { workspace_id: targetId });
    const e = err as { data?: any; envelopeCode?: number; message?: string };
    const code = typeof e?.data?.code === 'string' ? e.data.code : refused?.code ?? (refused ? `http_${refused.status}` : 'a2a_error');
    const message = (typeof e?.message === 'string' && e.message) || refused?.message || String(err);
    return errorText(code, message, { workspace_id: targetId, ...(typeof e?.envelopeCode === 'number' ? { rpc_code: e.envelopeCode } : {}) });
  }
}
