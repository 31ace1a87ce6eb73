import { parseSseStream } from '@a2a-js/sdk';

/** An API answer that was not 2xx, carrying the platform's `{error, code}`. */
export class ApiCallError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

/** The platform's REST API as the CLI uses it: JSON in, JSON out, errors as ApiCallError. */
export class Api {
  constructor(
    readonly baseUrl: string,
    private readonly token: string | undefined,
  ) {}

  private headers(extra: Record<string, string> = {}): Record<string, string> {
    return { ...(this.token ? { authorization: `Bearer ${this.token}` } : {}), ...extra };
  }

  async fetch(method: string, path: string, body?: unknown, accept = 'application/json'): Promise<Response> {
    let res: Response;
    try {
      res = await fetch(new URL(path, this.baseUrl), {
        method,
        headers: this.headers({ accept, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) }),
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (err) {
      const cause = (err as { cause?: { code?: string } }).cause?.code ?? (err as Error).message;
      throw new ApiCallError(0, 'unreachable', `cannot reach the platform at ${this.baseUrl} (${cause}); is it running? (set MOLECULE_URL or --url)`);
    }
    if (!res.ok) throw await errorOf(res);
    return res;
  }

  async json<T = any>(method: string, path: string, body?: unknown): Promise<T> {
    const res = await this.fetch(method, path, body);
    const text = await res.text();
    return (text ? JSON.parse(text) : undefined) as T;
  }

  /**
   * Every page of a paged list (GET /workspaces): follows the X-Next-Cursor header, `pageSize` rows a request,
   * until the list ends or `max` rows have come.
   */
  async pages<T = any>(path: string, opts: { pageSize?: number; max?: number } = {}): Promise<T[]> {
    const out: T[] = [];
    const max = opts.max ?? Infinity;
    let cursor: string | null = null;
    do {
      const u = new URL(path, 'http://x');
      u.searchParams.set('limit', String(Math.min(opts.pageSize ?? 500, Math.max(1, max - out.length))));
      if (cursor) u.searchParams.set('cursor', cursor);
      const res = await this.fetch('GET', `${u.pathname}?${u.searchParams}`);
      out.push(...((await res.json()) as T[]));
      cursor = res.headers.get('x-next-cursor');
    } while (cursor && out.length < max);
    return out;
  }

  /** Server-sent events of a GET or POST, as parsed JSON payloads. */
  async *sse(method: string, path: string, body?: unknown): AsyncGenerator<{ type: string; data: any }> {
    const res = await this.fetch(method, path, body, 'text/event-stream');
    if (!(res.headers.get('content-type') ?? '').includes('text/event-stream')) {
      // A JSON-RPC answer instead of a stream (the agent answered with one message, or an error).
      yield { type: 'message', data: await res.json() };
      return;
    }
    for await (const ev of parseSseStream(res)) {
      yield { type: ev.type, data: ev.data ? JSON.parse(ev.data) : undefined };
    }
  }
}

async function errorOf(res: Response): Promise<ApiCallError> {
  const text = await res.text();
  try {
    const body = JSON.parse(text) as { error?: unknown; code?: unknown };
    if (typeof body.error === 'string') return new ApiCallError(res.status, String(body.code ?? 'error'), body.error);
  } catch {
    /* not JSON: fall through */
  }
  return new ApiCallError(res.status, `http_${res.status}`, `HTTP ${res.status}: ${text.slice(0, 200) || res.statusText}`);
}
