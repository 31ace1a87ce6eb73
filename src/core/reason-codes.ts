import type { ProvisionErrorCode } from './provisioner.js';

/**
 * Status reasons are sentences for people (workspace-steps.ts, restart-policy.ts, workspaces.ts); metrics need a
 * short code from a fixed set, so a new wording can never grow the label set. Matched on how each sentence
 * starts, which is what the writers of those sentences keep stable.
 */

/** Every ProvisionErrorCode, checked by the compiler: a new code must be added here to get its own label. */
const PROVISION_CODES: Record<ProvisionErrorCode, true> = {
  IMAGE_NOT_FOUND: true,
  CAPACITY: true,
  INVALID_CONFIG: true,
  BACKEND_UNAVAILABLE: true,
  START_FAILED: true,
  DESTROY_FAILED: true,
  NOT_FOUND: true,
};

export const RESTART_REASONS = ['instance_exited', 'instance_gone', 'heartbeat_lost', 'backend_unavailable', 'requested'] as const;
export const FAILURE_REASONS = ['crash_loop', 'provision_timeout', 'backend_start_failed', 'prepare_failed'] as const;

/** The code of a status reason: instance_exited, heartbeat_lost, crash_loop, provision_timeout, backend_<code> … or other. */
export function reasonCode(reason: string): string {
  const r = reason.trim();
  if (r.startsWith('crash loop')) return 'crash_loop';
  if (r.startsWith('AGENT_NEVER_REGISTERED')) return 'provision_timeout';
  if (r.startsWith('no heartbeat for')) return 'heartbeat_lost';
  if (/^(found the )?instance (stopped|failed)\b/.test(r)) return 'instance_exited';
  if (/^(found the )?instance gone\b/.test(r)) return 'instance_gone';
  if (r === 'restart requested') return 'requested';
  if (r.startsWith('backend error')) return 'backend_error';
  if (r.startsWith('could not prepare the instance')) return 'prepare_failed';
  const code = /^([A-Z_]+):/.exec(r)?.[1];
  if (code && code in PROVISION_CODES) return `backend_${code.toLowerCase().replace(/^backend_/, '')}`;
  return 'other';
}

/**
 * Whether a `workspace.status` event is a restart (the platform decided to start the agent again, or a person
 * asked for it) or a failure (the workspace ended in `failed`), and its reason code; null for anything else.
 * An agent that died is counted once, when its restart is scheduled (offline "…; restarting in N s"), not again
 * when the restart begins; a wake or a resume is not a restart.
 */
export function lifecycleOutcome(data: { from?: unknown; to?: unknown; reason?: unknown; action?: unknown }): { kind: 'restart' | 'failure'; reason: string } | null {
  const reason = typeof data.reason === 'string' ? data.reason : '';
  if (data.to === 'failed') return { kind: 'failure', reason: reasonCode(reason) };
  if (data.to === 'offline' && reason.includes('; restarting in ')) return { kind: 'restart', reason: reasonCode(reason) };
  if (data.to === 'provisioning' && data.action === 'restart') return { kind: 'restart', reason: 'requested' };
  return null;
}
