import { z } from 'zod';
import { AGENT_ENV } from '../agent/contract.js';
import { RUNTIMES } from '../core/runtimes.js';
import { WORKSPACE_STATUSES } from '../core/types.js';

/**
 * Request and response schemas: the single source for validation at the edge and for /openapi.json.
 */

const CONTROL = /[\u0000-\u001f\u007f]/;
const CONTROL_EXCEPT_NEWLINES = /[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f]/;

/** Keys the platform sets itself (the agent contract, plus the process's own); env or secrets may not override them. */
export const RESERVED_ENV = [
  ...Object.values(AGENT_ENV).filter((k) => !k.startsWith('MOLECULE_')),
  'AGENT_HOST',
  'PATH',
  'HOME',
  'NODE_OPTIONS',
  'LD_PRELOAD',
  'LD_LIBRARY_PATH',
];
const RESERVED_PREFIXES = ['MOLECULE_', 'FLY_'];

export const EnvKey = z
  .string()
  .regex(/^[A-Za-z_][A-Za-z0-9_]{0,127}$/, 'must be a letter or _ followed by letters, digits or _ (at most 128)')
  .refine((k) => !RESERVED_ENV.includes(k.toUpperCase()) && !RESERVED_PREFIXES.some((p) => k.toUpperCase().startsWith(p)), {
    message: `is reserved for the platform (${RESERVED_ENV.join(', ')}, ${RESERVED_PREFIXES.map((p) => `${p}*`).join(', ')})`,
  });

const EnvValue = z.string().max(32 * 1024, 'must be at most 32 KiB');
const EnvMap = z
  .record(EnvKey, EnvValue)
  .refine((m) => Object.keys(m).length <= 200, 'at most 200 variables');

export const Name = z
  .string()
  .min(1, 'must not be empty')
  .max(255, 'must be at most 255 characters')
  .refine((s) => !CONTROL.test(s), 'must not contain control characters')
  .refine((s) => s.trim().length > 0, 'must not be blank');

const Role = z
  .string()
  .max(4000, 'must be at most 4000 characters')
  .refine((s) => !CONTROL_EXCEPT_NEWLINES.test(s), 'must not contain control characters');

export const Tier = z
  .number({ error: 'must be an integer from 1 to 4' })
  .int('must be an integer from 1 to 4')
  .min(1, 'must be an integer from 1 to 4')
  .max(4, 'must be an integer from 1 to 4');

const Runtime = z.string().refine((r) => (RUNTIMES as readonly string[]).includes(r), {
  error: (iss) => `unknown runtime ${JSON.stringify(iss.input)}; valid runtimes: ${RUNTIMES.join(', ')}`,
});

const Region = z.string().regex(/^[a-z][a-z0-9-]{1,31}$/, 'must be a region code such as ord, iad or ams');

/** Seconds of idleness before a workspace sleeps (core/idle.ts): at least 1 s, at most 30 days. */
const IdleTimeout = z.number().int('must be whole seconds').min(1).max(30 * 24 * 3600);

export const WorkspaceId = z.uuid({ error: 'must be a workspace id (a UUID)' });

export const IdParams = z.object({ id: WorkspaceId });

export const CreateWorkspaceBody = z
  .object({
    name: Name,
    role: Role.optional(),
    runtime: Runtime.default('hermes'),
    tier: Tier.default(2),
    region: Region.nullish(),
    parent_id: WorkspaceId.nullish(),
    env: EnvMap.optional(),
    secrets: EnvMap.optional().describe('stored encrypted; only names are ever returned'),
    idle_timeout_s: IdleTimeout.nullish().describe('sleep after this many seconds with no A2A call, no open stream and no active task; null = never; absent = MOLECULE_IDLE_TIMEOUT_S (unset: never)'),
  })
  .strict();

export const PatchWorkspaceBody = z
  .object({
    name: Name.optional(),
    role: Role.optional(),
    tier: Tier.optional(),
    env: EnvMap.optional(),
    idle_timeout_s: IdleTimeout.nullish().describe('null = never sleep; takes effect at once'),
    parent_id: WorkspaceId.nullable()
      .optional()
      .describe(
        'move under this workspace (null: top-level); takes effect at once, A2A access rules included, with no restart. 400 unknown_parent unless a live workspace; 409 parent_cycle for the workspace itself or one of its descendants',
      ),
  })
  .strict()
  .refine((b) => Object.keys(b).length > 0, 'give at least one of name, role, tier, env, idle_timeout_s, parent_id');

const StatusList = z
  .string()
  .transform((s) => s.split(',').map((x) => x.trim()).filter(Boolean))
  .pipe(z.array(z.enum(WORKSPACE_STATUSES, { error: `must be one or more of ${WORKSPACE_STATUSES.join(', ')}` })));

/** GET /workspaces pages: `limit` rows (default and maximum below), then the next page from `cursor`. */
export const LIST_DEFAULT_LIMIT = 100;
export const LIST_MAX_LIMIT = 500;

/**
 * A page cursor is opaque to clients: base64url of `[created_at, id]` of the last row of the previous page, the
 * position of a keyset walk in (created_at, id) order. Both never change, so a cursor stays valid for ever and
 * pages never repeat or skip a row that existed when the walk began, whatever is created or deleted meanwhile.
 */
export function encodeCursor(p: { createdAt: string; id: string }): string {
  return Buffer.from(JSON.stringify([p.createdAt, p.id])).toString('base64url');
}

const ISO_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$/;

export function decodeCursor(cursor: string): { createdAt: string; id: string } | null {
  if (!/^[A-Za-z0-9_-]{1,400}$/.test(cursor)) return null;
  try {
    const v = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8')) as unknown;
    if (!Array.isArray(v) || v.length !== 2 || typeof v[0] !== 'string' || typeof v[1] !== 'string') return null;
    if (!ISO_TIME.test(v[0]) || !WorkspaceId.safeParse(v[1]).success) return null;
    return { createdAt: v[0], id: v[1] };
  } catch {
    return null;
  }
}

const Cursor = z
  .string()
  .transform((s, ctx) => {
    const p = decodeCursor(s);
    if (!p) {
      ctx.addIssue({ code: 'custom', message: "is not a cursor this platform gave out (take it from the last page's Link or X-Next-Cursor header)" });
      return z.NEVER;
    }
    return p;
  })
  .describe("the next page: the X-Next-Cursor header (or the Link rel=\"next\" URL) of the previous page");

export const ListQuery = z
  .object({
    status: StatusList.optional(),
    parent_id: WorkspaceId.optional(),
    q: z
      .string()
      .max(255, 'must be at most 255 characters')
      .transform((s) => s.trim())
      .optional()
      .describe('only workspaces whose name contains this, ignoring case'),
    limit: z.coerce
      .number({ error: `must be an integer from 1 to ${LIST_MAX_LIMIT}` })
      .int(`must be an integer from 1 to ${LIST_MAX_LIMIT}`)
      .min(1, `must be an integer from 1 to ${LIST_MAX_LIMIT}`)
      .max(LIST_MAX_LIMIT, `must be an integer from 1 to ${LIST_MAX_LIMIT}`)
      .optional()
      .describe(`rows per page: default ${LIST_DEFAULT_LIMIT}, at most ${LIST_MAX_LIMIT}`),
    cursor: Cursor.optional(),
  })
  .strict();

export const DeleteQuery = z.object({ confirm: z.enum(['true', 'false', '1', '0']).optional() }).strict();

export const LogsQuery = z
  .object({
    tail: z.coerce.number().int().min(0).max(10000).optional(),
    follow: z.enum(['1', 'true', '0', 'false']).optional(),
  })
  .strict();

export const EventsQuery = z
  .object({
    workspace_id: WorkspaceId.optional(),
    after: z.coerce.number().int().min(0).optional(),
    limit: z.coerce.number().int().min(1).max(1000).optional(),
  })
  .strict();

export const SecretKeyParams = z.object({ key: EnvKey });
export const WorkspaceSecretParams = z.object({ id: WorkspaceId, key: EnvKey });
export const SecretBody = z.object({ value: EnvValue }).strict();

export const RegisterBody = z.object({
  url: z.string().max(2048),
  agent_card: z.record(z.string(), z.unknown()),
});

export const HeartbeatBody = z.object({
  active_tasks: z.number().int().min(0),
  current_task: z.string().max(1000).nullable(),
  error_rate: z.number().min(0).max(1),
  uptime_s: z.number().min(0),
});

export const ErrorBody = z.object({ error: z.string(), code: z.string() }).passthrough();

export const WorkspaceView = z.object({
  id: z.string(),
  name: z.string(),
  role: z.string(),
  runtime: z.string(),
  tier: z.number(),
  region: z.string().nullable(),
  parent_id: z.string().nullable(),
  env: z.record(z.string(), z.string()),
  status: z.enum(WORKSPACE_STATUSES),
  status_reason: z.string().nullable(),
  status_changed_at: z.string(),
  backend: z.string(),
  instance: z
    .object({ id: z.string(), url: z.string().nullable() })
    .catchall(z.unknown())
    .nullable(),
  agent: z.object({ url: z.string().nullable(), name: z.string().nullable() }),
  last_heartbeat_at: z.string().nullable(),
  heartbeat: z.record(z.string(), z.unknown()).nullable(),
  restart_count: z.number(),
  next_restart_at: z.string().nullable(),
  needs_restart: z.boolean(),
  created_at: z.string(),
  updated_at: z.string(),
  ready_at: z.string().nullable(),
  removed_at: z.string().nullable(),
  idle_timeout_s: z.number().nullable().describe('seconds idle before it sleeps; null = never'),
  active_at: z.string().nullable().describe('last activity the platform recorded (A2A call, open stream, busy heartbeat); may lag by a few seconds'),
});
