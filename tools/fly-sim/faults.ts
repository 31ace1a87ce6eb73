/**
 * Fault injection. Faults are matched per request by action (route) and optional app / machine / region,
 * and each one fires `count` times in a row (default 1; `count: null` or omitted where noted = until cleared).
 */

// App-scoped actions are named once and spliced into ACTIONS, so the two lists cannot drift apart.
const APP_ACTIONS = ['apps_list', 'app_create', 'app_get', 'app_delete', 'regions', 'list', 'create'] as const;
const SECRET_ACTIONS = ['secrets_list', 'secrets_update', 'secret_get', 'secret_set', 'secret_delete'] as const;

/** Action names, one per Machines API route the simulator serves. */
export const ACTIONS = [
  ...APP_ACTIONS,
  'get',
  'update',
  'destroy',
  'start',
  'stop',
  'suspend',
  'restart',
  'signal',
  'wait',
  'lease_get',
  'lease_acquire',
  'lease_release',
  'events',
  'versions',
  'metadata_get',
  'metadata_set',
  'metadata_delete',
  'metadata_replace',
  'cordon',
  'uncordon',
  'exec',
  'ps',
  ...SECRET_ACTIONS,
] as const;

export type Action = (typeof ACTIONS)[number];

/** Actions scoped to an app rather than a machine (for rate limiting). */
export const APP_LEVEL_ACTIONS: ReadonlySet<string> = new Set([...APP_ACTIONS, ...SECRET_ACTIONS]);

interface Scope {
  /** Only requests for this app. */
  app?: string;
  /** Only requests for this machine id. */
  machine?: string;
}

export type FaultSpec =
  /** Answer `status` (any 4xx/5xx) instead of running the handler. 429 → `rate limit exceeded`; 502 → a non-JSON body. */
  | ({ kind: 'status'; action: Action | '*'; status: number; count?: number | null; error?: string; body?: string } & Scope)
  /** Sugar: `status` with 429 and Fly's body. */
  | ({ kind: 'rate_limit'; action: Action | '*'; count?: number | null } & Scope)
  /** Sugar: `status` with a 5xx (default 503). */
  | ({ kind: 'server_error'; action: Action | '*'; status?: 500 | 502 | 503 | 504; count?: number | null } & Scope)
  /** Create commits the machine (and boots it), then answers 408 — the ambiguous create of reference §1/§8. */
  | { kind: 'create_timeout'; count?: number | null; app?: string; delayMs?: number }
  /** Creates in `region` answer 503 `{"status":"insufficient_capacity"}`. Default: until cleared. */
  | { kind: 'insufficient_capacity'; region: string; count?: number | null; app?: string }
  /** 409 "insufficient memory" on create / update / start. Default action: create. */
  | ({ kind: 'insufficient_memory'; action?: 'create' | 'update' | 'start'; count?: number | null } & Scope)
  /** This image (exact reference, or repository without tag) cannot be pulled: machines end in `failed`. */
  | { kind: 'unpullable_image'; image: string }
  /** Every boot waits this long in `starting` before the process is spawned (sets settings.slowBootMs). */
  | { kind: 'slow_boot'; ms: number }
  /**
   * The request is carried out (its change applied), then its answer is lost: the client gets `status` (default
   * 503) instead — the ambiguous failure of any mutation (reference §1), as `create_timeout` is for create.
   */
  | ({ kind: 'lost_response'; action: Action | '*'; status?: 408 | 500 | 502 | 503 | 504; count?: number | null } & Scope)
  /** List answers newest first instead of in creation order (Fly documents no order). Default: until cleared. */
  | { kind: 'list_order'; order: 'newest_first'; app?: string; count?: number | null };

export interface ActiveFault {
  id: number;
  spec: FaultSpec;
  /** Remaining firings; null = until cleared. */
  remaining: number | null;
  fired: number;
}

export interface FaultContext {
  action: string;
  app?: string;
  machine?: string;
  region?: string;
}

const DEFAULT_UNTIL_CLEARED = new Set(['insufficient_capacity', 'unpullable_image', 'slow_boot', 'list_order']);

export class FaultRegistry {
  private seq = 0;
  private faults: ActiveFault[] = [];
  /** Called for settings-type faults (slow_boot) so the simulator can apply them. */
  onSettings?: (spec: FaultSpec) => void;

  add(spec: FaultSpec): number {
    validateFaultSpec(spec);
    if (spec.kind === 'slow_boot') {
      this.onSettings?.(spec);
      return 0;
    }
    const count = 'count' in spec ? spec.count : undefined;
    const remaining = count === null ? null : count === undefined ? (DEFAULT_UNTIL_CLEARED.has(spec.kind) ? null : 1) : count;
    const f: ActiveFault = { id: ++this.seq, spec, remaining, fired: 0 };
    this.faults.push(f);
    return f.id;
  }

  list(): ActiveFault[] {
    return this.faults.map((f) => ({ ...f }));
  }

  /** Removes one fault by id, or all of them. */
  clear(id?: number): void {
    this.faults = id === undefined ? [] : this.faults.filter((f) => f.id !== id);
  }

  /** Finds (and consumes one firing of) the first fault of one of `kinds` that matches. */
  take(kinds: FaultSpec['kind'][], ctx: FaultContext): FaultSpec | null {
    for (const f of this.faults) {
      if (!kinds.includes(f.spec.kind)) continue;
      if (!matches(f.spec, ctx)) continue;
      if (f.spec.kind === 'unpullable_image') continue; // looked up with isUnpullable, never consumed
      f.fired++;
      if (f.remaining !== null) {
        f.remaining--;
        if (f.remaining <= 0) this.faults = this.faults.filter((x) => x !== f);
      }
      return f.spec;
    }
    return null;
  }

  isUnpullable(image: string, repository: string): boolean {
    return this.faults.some(
      (f) => f.spec.kind === 'unpullable_image' && (f.spec.image === image || f.spec.image === repository || image.startsWith(`${f.spec.image}:`)),
    );
  }
}

function matches(spec: FaultSpec, ctx: FaultContext): boolean {
  const s = spec as FaultSpec & Scope & { action?: string; region?: string };
  if (s.app !== undefined && s.app !== ctx.app) return false;
  if (s.machine !== undefined && s.machine !== ctx.machine) return false;
  switch (spec.kind) {
    case 'status':
    case 'rate_limit':
    case 'server_error':
    case 'lost_response':
      return spec.action === '*' || spec.action === ctx.action;
    case 'list_order':
      return ctx.action === 'list';
    case 'create_timeout':
      return ctx.action === 'create';
    case 'insufficient_capacity':
      return ctx.action === 'create' && spec.region === ctx.region;
    case 'insufficient_memory':
      return (spec.action ?? 'create') === ctx.action;
    default:
      return false;
  }
}

/** Throws an Error with a readable message for a malformed spec (the admin endpoint answers 400 with it). */
export function validateFaultSpec(spec: unknown): asserts spec is FaultSpec {
  const s = spec as Record<string, unknown>;
  if (typeof s !== 'object' || s === null) throw new Error('fault must be an object with a "kind"');
  const need = (cond: boolean, msg: string) => {
    if (!cond) throw new Error(`invalid fault ${JSON.stringify(s.kind)}: ${msg}`);
  };
  const count = s.count;
  need(count === undefined || count === null || (Number.isInteger(count) && (count as number) > 0), 'count must be a positive integer or null');
  const actionOk = (a: unknown) => a === '*' || (ACTIONS as readonly string[]).includes(a as string);
  switch (s.kind) {
    case 'status':
      need(actionOk(s.action), `action must be "*" or one of ${ACTIONS.join(', ')}`);
      need(Number.isInteger(s.status) && (s.status as number) >= 400 && (s.status as number) <= 599, 'status must be 400..599');
      break;
    case 'rate_limit':
      need(actionOk(s.action), `action must be "*" or one of ${ACTIONS.join(', ')}`);
      break;
    case 'server_error':
      need(actionOk(s.action), `action must be "*" or one of ${ACTIONS.join(', ')}`);
      need(s.status === undefined || [500, 502, 503, 504].includes(s.status as number), 'status must be 500, 502, 503 or 504');
      break;
    case 'create_timeout':
      need(s.delayMs === undefined || (typeof s.delayMs === 'number' && s.delayMs >= 0), 'delayMs must be >= 0');
      break;
    case 'insufficient_capacity':
      need(typeof s.region === 'string' && s.region.length > 0, 'region is required');
      break;
    case 'insufficient_memory':
      need(s.action === undefined || ['create', 'update', 'start'].includes(s.action as string), 'action must be create, update or start');
      break;
    case 'unpullable_image':
      need(typeof s.image === 'string' && s.image.length > 0, 'image is required');
      break;
    case 'slow_boot':
      need(typeof s.ms === 'number' && s.ms >= 0, 'ms must be a number >= 0');
      break;
    case 'lost_response':
      need(actionOk(s.action), `action must be "*" or one of ${ACTIONS.join(', ')}`);
      need(s.status === undefined || [408, 500, 502, 503, 504].includes(s.status as number), 'status must be 408, 500, 502, 503 or 504');
      break;
    case 'list_order':
      need(s.order === 'newest_first', 'order must be "newest_first"');
      break;
    default:
      throw new Error(
        `unknown fault kind ${JSON.stringify(s.kind)}; one of status, rate_limit, server_error, create_timeout, insufficient_capacity, insufficient_memory, unpullable_image, slow_boot, lost_response, list_order`,
      );
  }
}

/** The HTTP answer for a status-type fault. */
export function statusFaultResponse(spec: FaultSpec): { status: number; body: unknown; contentType: string } {
  if (spec.kind === 'lost_response') return statusFaultResponse({ kind: 'status', action: spec.action, status: spec.status ?? 503 });
  if (spec.kind === 'rate_limit') return { status: 429, body: { error: 'rate limit exceeded' }, contentType: 'application/json' };
  const status = spec.kind === 'server_error' ? (spec.status ?? 503) : spec.kind === 'status' ? spec.status : 500;
  if (spec.kind === 'status' && spec.body !== undefined) return { status, body: spec.body, contentType: 'text/plain; charset=utf-8' };
  if (spec.kind === 'status' && spec.error !== undefined) return { status, body: { error: spec.error }, contentType: 'application/json' };
  if (status === 429) return { status, body: { error: 'rate limit exceeded' }, contentType: 'application/json' };
  if (status === 502) return { status, body: '502 Bad Gateway\n', contentType: 'text/plain; charset=utf-8' };
  const text: Record<number, string> = {
    500: 'internal error (injected by fly-sim)',
    503: 'unavailable: service temporarily unavailable (injected by fly-sim)',
    504: 'deadline_exceeded: gateway timeout (injected by fly-sim)',
    408: 'deadline_exceeded: request timed out (injected by fly-sim)',
  };
  return { status, body: { error: text[status] ?? `injected ${status} (fly-sim)` }, contentType: 'application/json' };
}
