/**
 * The platform's REST API, called from the page it serves. With MOLECULE_ADMIN_TOKEN set the API answers 401;
 * the token a person signs in with is kept for this tab only (sessionStorage) and sent as a bearer token.
 */

const TOKEN_KEY = 'molecule.adminToken';

export function getToken(): string | null {
  return sessionStorage.getItem(TOKEN_KEY);
}

export function setToken(token: string | null): void {
  if (token) sessionStorage.setItem(TOKEN_KEY, token);
  else sessionStorage.removeItem(TOKEN_KEY);
}

/** Fired when the API refuses our token (or we have none and it wants one): the app shows the sign-in form. */
export const authEvents = new EventTarget();

/** An error answer of the API: `{error, code}`, plus `issues` for validation errors. */
export class ApiFailure extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly body: Record<string, unknown> = {},
  ) {
    super(message);
  }

  get issues(): string[] {
    return Array.isArray(this.body.issues) ? (this.body.issues as string[]) : [];
  }
}

export function authHeaders(): Record<string, string> {
  const token = getToken();
  return token ? { authorization: `Bearer ${token}` } : {};
}

/** fetch with the token; a 401 signs the person out. Throws ApiFailure for an error answer. */
export async function request(method: string, path: string, init: { body?: unknown; headers?: Record<string, string>; signal?: AbortSignal } = {}): Promise<Response> {
  const headers: Record<string, string> = { ...authHeaders(), ...init.headers };
  let body: string | undefined;
  if (init.body !== undefined) {
    headers['content-type'] = 'application/json';
    body = typeof init.body === 'string' ? init.body : JSON.stringify(init.body);
  }
  const res = await fetch(path, { method, headers, body, signal: init.signal });
  if (res.status === 401) authEvents.dispatchEvent(new Event('unauthorized'));
  if (!res.ok) throw await failureOf(res);
  return res;
}

export async function api<T>(method: string, path: string, body?: unknown): Promise<T> {
  const res = await request(method, path, { body });
  if (res.status === 204) return undefined as T;
  const type = res.headers.get('content-type') ?? '';
  return (type.includes('json') ? await res.json() : await res.text()) as T;
}

async function failureOf(res: Response): Promise<ApiFailure> {
  const text = await res.text();
  try {
    const body = JSON.parse(text) as Record<string, unknown>;
    const rpc = body.error && typeof body.error === 'object' ? (body.error as { message?: string; code?: number }) : null;
    if (rpc) return new ApiFailure(res.status, String(rpc.code ?? res.status), rpc.message ?? res.statusText, body);
    return new ApiFailure(res.status, String(body.code ?? res.status), String(body.error ?? res.statusText), body);
  } catch {
    return new ApiFailure(res.status, String(res.status), text.trim() || res.statusText);
  }
}

/** Where the live event socket is; browsers cannot set headers on a WebSocket, so the token rides in the query. */
export function socketUrl(): string {
  const url = new URL('/ws', location.href);
  url.protocol = location.protocol === 'https:' ? 'wss:' : 'ws:';
  url.searchParams.set('heartbeats', '1');
  // Call pulses are few (one per edge per second at most): asked for always, so opening the map needs no new socket.
  url.searchParams.set('calls', '1');
  const token = getToken();
  if (token) url.searchParams.set('token', token);
  return url.href;
}

/** Splits a create/patch failure into messages per form field (`body.name: must not be empty` → name). */
export function fieldErrors(err: ApiFailure, fields: readonly string[]): { byField: Record<string, string>; rest: string[] } {
  const byField: Record<string, string> = {};
  const rest: string[] = [];
  const add = (field: string, msg: string) => {
    byField[field] = byField[field] ? `${byField[field]}; ${msg}` : msg;
  };
  const issues = err.issues.length ? err.issues : [err.message];
  for (const issue of issues) {
    const m = issue.match(/^body\.([A-Za-z_]+)(?:\.(\S+))?: (.*)$/);
    if (m && fields.includes(m[1])) {
      add(m[1], m[2] ? `${m[2]} ${m[3]}` : m[3]);
      continue;
    }
    // Errors the backend or the core finds name their field first ("region \"xyz\" is not a Fly region …").
    const lead = issue.match(/^([a-z_]+)\b/)?.[1];
    if (err.code === 'unknown_parent') add('parent_id', issue);
    else if (lead && fields.includes(lead) && err.code === 'invalid_for_backend') add(lead, issue.slice(lead.length).trim());
    else rest.push(issue);
  }
  return { byField, rest };
}
