import type { Config } from './config.js';
import type { Workspace } from './types.js';

export type RestartDecision =
  /** Restart after `delayMs`; `recent` are the automatic restarts still inside the crash window. */
  | { kind: 'restart'; delayMs: number; recent: string[] }
  /** It keeps dying: give up, saying why. */
  | { kind: 'crash loop'; why: string };

/**
 * What to do about a workspace whose instance is gone while it should run: restart it after an exponential
 * backoff (doubling per automatic restart inside the crash window, capped), or call it a crash loop once it has
 * been restarted `crashLoopMax` times inside the window. A backend outage is not the agent crashing: it does not
 * count toward the crash loop (nor does the automatic restart that ran into it), and backs off by its own count
 * of attempts, for as long as it lasts.
 */
export function restartDecision(
  ws: Pick<Workspace, 'restarts' | 'statusReason'>,
  reason: string,
  t: Pick<Config['timing'], 'crashWindowMs' | 'crashLoopMax' | 'restartBackoffMs' | 'restartBackoffMaxMs'>,
  now: number,
  outage?: { outageAttempts: number },
): RestartDecision {
  let recent = ws.restarts.filter((at) => now - Date.parse(at) < t.crashWindowMs);
  let step = recent.length;
  if (outage) {
    if (ws.statusReason?.startsWith('automatic restart')) recent = recent.slice(0, -1);
    step = outage.outageAttempts;
  } else if (recent.length >= t.crashLoopMax) {
    const mins = Math.round(t.crashWindowMs / 60000);
    return { kind: 'crash loop', why: `crash loop: the agent stopped ${recent.length + 1} times within ${mins} min; last: ${reason}` };
  }
  return { kind: 'restart', delayMs: Math.min(t.restartBackoffMs * 2 ** step, t.restartBackoffMaxMs), recent };
}
