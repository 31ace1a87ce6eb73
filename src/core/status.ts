import type { WorkspaceStatus } from './types.js';

/** Allowed transitions (design.md, "Workspace status machine"). Anything else is a bug, not a caller error. */
export const TRANSITIONS: Record<WorkspaceStatus, readonly WorkspaceStatus[]> = {
  provisioning: ['ready', 'failed', 'offline', 'paused', 'removing', 'provisioning'],
  ready: ['degraded', 'offline', 'provisioning', 'paused', 'sleeping', 'removing'],
  degraded: ['ready', 'offline', 'provisioning', 'paused', 'sleeping', 'removing'],
  offline: ['provisioning', 'ready', 'failed', 'paused', 'removing'],
  failed: ['provisioning', 'paused', 'removing'],
  paused: ['provisioning', 'removing'],
  /** Stopped or suspended by the idle timeout (core/idle.ts); a message or a wake request starts it again. */
  sleeping: ['provisioning', 'paused', 'removing'],
  removing: ['removed', 'removing'],
  removed: [],
};

export function canTransition(from: WorkspaceStatus, to: WorkspaceStatus): boolean {
  return TRANSITIONS[from].includes(to);
}

/** User actions and the statuses they are allowed from. */
export const ACTIONS = {
  restart: ['provisioning', 'ready', 'degraded', 'offline', 'failed', 'paused', 'sleeping'],
  pause: ['provisioning', 'ready', 'degraded', 'offline', 'failed', 'sleeping'],
  resume: ['paused'],
  wake: ['sleeping'],
  delete: ['provisioning', 'ready', 'degraded', 'offline', 'failed', 'paused', 'sleeping', 'removing'],
} as const satisfies Record<string, readonly WorkspaceStatus[]>;

export type Action = keyof typeof ACTIONS;

/** Statuses in which a workspace has (or should have) a live instance that A2A can reach. */
export const ROUTABLE: readonly WorkspaceStatus[] = ['ready', 'degraded'];
