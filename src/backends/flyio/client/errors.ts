/** A Machines API call that failed. `status` 0 means no HTTP answer (network error or client timeout). */
export class FlyApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly flyRequestId: string | null,
    readonly body: unknown,
    readonly method: string,
    readonly path: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'FlyApiError';
  }

  get isNetwork(): boolean {
    return this.status === 0;
  }

  /** Fly's many capacity answers (reference §14.7): 503 insufficient_capacity, 409/412 insufficient resources, 403 quota. */
  get isCapacity(): boolean {
    const b = this.body as { status?: unknown } | null;
    if (b && typeof b === 'object' && b.status === 'insufficient_capacity') return true;
    if (![403, 409, 412, 503].includes(this.status)) return false;
    return /insufficient (capacity|resources|memory)|over the allowed quota|deploys to this host are temporarily disabled|could not reserve resource/i.test(
      this.message,
    );
  }

  /** Transient by Fly's own rules (flyctl: 408, 429, 5xx) and network errors — except capacity answers. */
  get retryable(): boolean {
    if (this.isCapacity) return false;
    return this.status === 0 || this.status === 408 || this.status === 429 || this.status >= 500;
  }

  /** A failure after which the request may or may not have been applied (never a 429 or a capacity answer). */
  get ambiguous(): boolean {
    if (this.isCapacity) return false;
    return this.status === 0 || this.status === 408 || this.status >= 500;
  }

  /** 412 answers of `start` that go away by themselves a moment later (reference §4). */
  get transientStart(): boolean {
    return (
      this.status === 412 &&
      /machine still active, refusing to start|machine getting replaced, refusing to start|unable to start machine from current state: '(created|stopping|replacing)'/.test(
        this.message,
      )
    );
  }
}

/** Fly's error text: `message` first (lease envelopes), then `error`, else the raw body. */
export function flyErrorMessage(status: number, body: unknown): string {
  if (body && typeof body === 'object') {
    const b = body as { message?: unknown; error?: unknown };
    if (typeof b.message === 'string' && b.message) return b.message;
    if (typeof b.error === 'string' && b.error) return b.error;
  }
  if (typeof body === 'string' && body.trim()) return body.trim().slice(0, 500);
  return `HTTP ${status}`;
}

/** The error of a call Fly answered with a failure status. */
export function errorFromAnswer(status: number, body: unknown, requestId: string | null, method: string, path: string): FlyApiError {
  return new FlyApiError(status, flyErrorMessage(status, body), requestId, body, method, path);
}

/** True for a FlyApiError 404: the machine, lease or secret is not there. */
export function isNotFound(e: unknown): e is FlyApiError {
  return e instanceof FlyApiError && e.status === 404;
}
