/**
 * How a backend reports each call it makes to its API (the Fly Machines API, the Docker engine) for
 * `molecule_backend_call_seconds`. Backends get this function through their options: they never import the
 * server's metrics, so they stay usable (and testable) without it.
 *
 * `action` and `outcome` must come from small fixed sets: they become metric labels.
 */
export type BackendCallObserver = (action: string, outcome: string, seconds: number) => void;

/** The outcome of an HTTP API call by its status (0: no answer at all), from a fixed set. */
export function httpCallOutcome(status: number): string {
  if (status >= 200 && status < 400) return 'ok';
  if (status === 0) return 'network';
  if (status === 404) return 'not_found';
  if (status === 408) return 'timeout';
  if (status === 409 || status === 412) return 'conflict';
  if (status === 429) return 'rate_limited';
  return status < 500 ? 'client_error' : 'server_error';
}
