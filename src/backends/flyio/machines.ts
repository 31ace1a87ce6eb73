import { instanceName, loadPlatformId as loadSharedPlatformId } from '../naming.js';
import type { InstanceStateName } from '../../core/provisioner.js';
import type { FlyMachine, FlyMachineConfig, FlyMachineEvent } from './client/index.js';
import { AGENT_PORT } from '../../agent/contract.js';

/** Helpers about machines as this backend sees them: names, metadata, state mapping, reasons from events. */

export const META = {
  workspaceId: 'molecule_workspace_id',
  platformId: 'molecule_platform_id',
  provisionId: 'molecule_provision_id',
} as const;

/** The port the agent listens on inside a machine (services[].internal_port): the agent contract's. */
export { AGENT_PORT };

/** `ws-<first 12 hex of the workspace id>` (unique per app on Fly, so also a duplicate guard). */
export const machineName = instanceName;

/** This platform's id for `list()` and reconcile, kept in `<dataDir>/flyio-platform-id`. */
export function loadPlatformId(dataDir: string): string {
  return loadSharedPlatformId(dataDir, 'flyio-platform-id');
}

/** Fly machine state → the Provisioner's view. */
export function mapState(state: string | undefined): InstanceStateName {
  switch (state) {
    case 'started':
      return 'running';
    case 'created':
    case 'starting':
    case 'restarting':
    case 'replacing':
    case 'updating':
    case 'launch_failed': // transient per Fly's state table; it settles in failed
      return 'starting';
    case 'stopped':
    case 'stopping':
    case 'suspended':
    case 'suspending':
      return 'stopped';
    case 'failed':
      return 'failed';
    case 'destroyed':
    case 'destroying':
    case undefined:
      return 'gone';
    default:
      return 'unknown';
  }
}

/** Events newest first, whatever order the API used. */
function newestFirst(m: FlyMachine): FlyMachineEvent[] {
  return [...(m.events ?? [])].sort((a, b) => (b.timestamp ?? 0) - (a.timestamp ?? 0));
}

export interface ExitFacts {
  exitCode: number | null;
  oomKilled: boolean;
  requestedStop: boolean;
}

export function lastExit(m: FlyMachine): ExitFacts | null {
  for (const ev of newestFirst(m)) {
    const x = ev.request?.exit_event;
    if (x && typeof x === 'object') {
      return {
        exitCode: typeof x.exit_code === 'number' ? x.exit_code : null,
        oomKilled: x.oom_killed === true,
        requestedStop: x.requested_stop === true,
      };
    }
  }
  return null;
}

/** The error text of the newest failure event (image pull, boot), if any. */
export function failureText(m: FlyMachine): string | null {
  for (const ev of newestFirst(m)) {
    const r = ev.request ?? {};
    const text = typeof r.error === 'string' ? r.error : typeof r.message === 'string' ? r.message : null;
    if (text) return text;
    if (ev.status === 'failed') return `machine failed (${ev.type} event from ${ev.source ?? 'flyd'})`;
  }
  return null;
}

/** Why a machine is not running, in words a person can act on. */
export function describeNotRunning(m: FlyMachine): string {
  if (m.state === 'failed') return failureText(m) ?? 'the machine is in state failed';
  if (m.state === 'destroyed' || m.state === 'destroying') return `the machine was ${m.state === 'destroyed' ? 'destroyed' : 'being destroyed'}`;
  const x = lastExit(m);
  if (!x) return `the machine is ${m.state}`;
  if (x.requestedStop) {
    const userStop = newestFirst(m).find((e) => e.type === 'stop' && e.source === 'user');
    return `the machine was stopped through the Fly API${userStop ? ' (flyctl machine stop, or another API client)' : ''}`;
  }
  const code = x.exitCode === null ? 'an unknown code' : `code ${x.exitCode}`;
  const sig = x.exitCode !== null && x.exitCode > 128 ? ` (signal ${x.exitCode - 128}${x.exitCode === 137 ? ', SIGKILL' : ''})` : '';
  return `the agent process exited with ${code}${sig}${x.oomKilled ? ': out of memory (OOM) at the tier limit' : ''}; machine ${m.state}`;
}

/** Image problems (pull, manifest, registry auth) as opposed to other boot failures. */
export function looksLikeImageProblem(text: string): boolean {
  return /pull|manifest|image|not found|unauthorized|denied|repository/i.test(text);
}

function sameMap(a: Record<string, string> = {}, b: Record<string, string> = {}): boolean {
  const ka = Object.keys(a);
  if (ka.length !== Object.keys(b).length) return false;
  return ka.every((k) => Object.hasOwn(b, k) && String(a[k]) === String(b[k]));
}

/** Which of the fields that matter for a workspace (image, env, guest) differ; compared semantically. */
export function configChanges(current: FlyMachineConfig | null | undefined, wanted: FlyMachineConfig): string[] {
  if (!current) return ['config'];
  const changed: string[] = [];
  if (current.image !== wanted.image) changed.push('image');
  if (!sameMap(current.env, wanted.env)) changed.push('env');
  if (JSON.stringify(secretRefs(current)) !== JSON.stringify(secretRefs(wanted))) changed.push('secrets');
  const g = current.guest ?? {};
  const w = wanted.guest ?? {};
  if ((g.cpu_kind ?? 'shared') !== w.cpu_kind || (g.cpus ?? 1) !== w.cpus || (g.memory_mb ?? 256) !== w.memory_mb) changed.push('guest');
  return changed;
}

/** The secret references of the first process (what decides which app secrets a machine sees), comparable. */
function secretRefs(cfg: FlyMachineConfig): unknown {
  const p = Array.isArray(cfg.processes) ? (cfg.processes[0] as { ignore_app_secrets?: boolean; secrets?: { env_var?: string; name?: string }[] } | undefined) : undefined;
  if (!p) return null;
  const refs = (p.secrets ?? []).map((r) => `${r.env_var}=${r.name ?? r.env_var}`).sort();
  return { ignore: p.ignore_app_secrets === true, refs };
}
