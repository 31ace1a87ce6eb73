import { TIERS, type Tier } from '../../core/types.js';

/** What a backend knows about how an agent ended. */
export interface ExitFacts {
  /** Exit status; null or absent when not known. */
  code?: number | null;
  /**
   * The signal that ended it (null: none) for backends that learn it directly. Leave it out when the runtime only
   * gives an exit status: container engines encode a fatal signal as 128 + its number, so 137 and 143 are kills.
   */
  signal?: string | null;
  oom?: boolean;
  /** Tier whose memory limit an OOM kill hit, when known: the reason then names the limit. */
  tier?: Tier;
  /** The runtime could not run the agent at all (the engine's words). */
  error?: string;
  /** What to say when the status is unknown. */
  unknown?: string;
}

/** Why an agent is no longer running, in words a person can act on. */
export function exitReason(x: ExitFacts): string {
  const code = x.code ?? null;
  if (x.oom) {
    return x.tier === undefined
      ? `killed: out of memory (OOM) at the tier's memory limit`
      : `OOM: the kernel killed the agent at the tier ${x.tier} memory limit (${TIERS[x.tier].memoryMb} MB; exit code ${code ?? 137})`;
  }
  if (x.error) return `the engine could not run it: ${x.error}`;
  if (x.signal) return `killed by ${x.signal}`;
  if (x.signal === undefined && code === 137) return 'killed (SIGKILL, exit code 137)';
  if (x.signal === undefined && code === 143) return 'terminated (SIGTERM, exit code 143)';
  if (code === null) return x.unknown ?? 'exited';
  return `exited with code ${code}`;
}
