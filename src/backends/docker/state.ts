import type Docker from 'dockerode';
import { AGENT_PORT } from '../../agent/contract.js';
import type { Tier } from '../../core/types.js';
import type { InstanceState } from '../../core/provisioner.js';
import { exitReason } from '../shared/exit-reason.js';
import { LABELS } from './labels.js';

export type ContainerState = {
  Status?: string;
  Running?: boolean;
  OOMKilled?: boolean;
  ExitCode?: number;
  Error?: string;
};

/** The instance state of a container, with a reason a person can act on. */
export function stateOf(s: ContainerState | undefined, tier: Tier, oomEvent = false): InstanceState {
  if (!s) return { state: 'unknown' };
  if (s.Running || s.Status === 'running' || s.Status === 'restarting') return { state: 'running' };
  if (s.Status === 'created') return { state: 'starting' };
  if (s.Status === 'paused') return { state: 'stopped', reason: 'container paused' };
  const oom = !!s.OOMKilled || oomEvent;
  const failed = oom || (s.ExitCode ?? 0) !== 0 || !!s.Error;
  return { state: failed ? 'failed' : 'stopped', reason: containerExitReason(s, tier, oomEvent), exitCode: s.ExitCode ?? null };
}

/** The engine's `oom` event can come without State.OOMKilled (the container may be gone before we inspect it). */
export function containerExitReason(s: ContainerState, tier: Tier, oomEvent = false): string {
  return exitReason({ code: s.ExitCode, oom: !!s.OOMKilled || oomEvent, tier, error: s.Error });
}

/** A container list entry's state, which has no exit details. */
export function listState(s: string | undefined): InstanceState['state'] {
  if (s === 'running' || s === 'restarting') return 'running';
  if (s === 'created') return 'starting';
  if (s === 'exited' || s === 'dead' || s === 'paused') return 'stopped';
  return 'unknown';
}

/** The tier a container was created for; a label someone edited falls back to the default tier. */
export function tierOf(info: Docker.ContainerInspectInfo): Tier {
  const t = Number(info.Config?.Labels?.[LABELS.tier]);
  return (t >= 1 && t <= 4 ? t : 2) as Tier;
}

/** The host port the agent's port is published on; null once the container stopped (the engine drops it). */
export function hostPort(info: Docker.ContainerInspectInfo | undefined): number | null {
  const b = info?.NetworkSettings?.Ports?.[`${AGENT_PORT}/tcp`]?.find((p) => p.HostIp === '127.0.0.1' || p.HostIp === '0.0.0.0' || p.HostIp === '');
  const n = Number(b?.HostPort);
  return Number.isInteger(n) && n > 0 ? n : null;
}
