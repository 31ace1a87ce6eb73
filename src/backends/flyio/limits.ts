import { TIERS, type Tier } from '../../core/types.js';

/**
 * What Fly accepts, checked before anything is sent (reference fly-machines-api.md §9 and §10), so a caller's
 * mistake is a 400 from our API instead of a machine that never comes.
 */

/** The 18 current Fly regions (reference §10). The live list is GET /v1/platform/regions. */
export const FLY_REGIONS: Readonly<Record<string, string>> = {
  ams: 'Amsterdam',
  arn: 'Stockholm',
  bom: 'Mumbai',
  cdg: 'Paris',
  dfw: 'Dallas',
  ewr: 'Secaucus NJ',
  fra: 'Frankfurt',
  gru: 'São Paulo',
  iad: 'Ashburn VA',
  jnb: 'Johannesburg',
  lax: 'Los Angeles',
  lhr: 'London',
  nrt: 'Tokyo',
  ord: 'Chicago',
  sin: 'Singapore',
  sjc: 'San Jose',
  syd: 'Sydney',
  yyz: 'Toronto',
};

export function isFlyRegion(code: string): boolean {
  return Object.hasOwn(FLY_REGIONS, code);
}

export function regionProblem(code: string): string | null {
  if (isFlyRegion(code)) return null;
  return `"${code}" is not a Fly region; use one of ${Object.keys(FLY_REGIONS).join(', ')}`;
}

export interface FlyGuest {
  cpu_kind: 'shared' | 'performance';
  cpus: number;
  memory_mb: number;
}

/** Tier → Fly guest: the tier table of design.md on shared CPUs. */
export function guestForTier(tier: Tier): FlyGuest {
  const t = TIERS[tier];
  if (!t) throw new Error(`unknown tier ${tier}`);
  return { cpu_kind: 'shared', cpus: t.cpus, memory_mb: t.memoryMb };
}

const GUEST_LIMITS: Record<FlyGuest['cpu_kind'], { cpus: number[]; minPerCpu: number; maxPerCpu: number }> = {
  shared: { cpus: [1, 2, 4, 6, 8], minPerCpu: 256, maxPerCpu: 2048 },
  performance: { cpus: [1, 2, 4, 6, 8, 10, 12, 14, 16], minPerCpu: 2048, maxPerCpu: 8192 },
};

/** Fly's guest rules (§9): CPU counts per kind, memory per CPU range, 256 MB steps. Null when Fly would accept it. */
export function guestProblem(g: FlyGuest): string | null {
  const l = GUEST_LIMITS[g.cpu_kind];
  if (!l) return `cpu_kind "${g.cpu_kind}" is not one of shared, performance`;
  if (!l.cpus.includes(g.cpus)) return `${g.cpu_kind} Fly machines have ${l.cpus.join(', ')} CPUs, not ${g.cpus}`;
  const min = l.minPerCpu * g.cpus;
  const max = l.maxPerCpu * g.cpus;
  if (g.memory_mb < min) return `${g.cpus} ${g.cpu_kind} CPU(s) need at least ${min} MB of memory on Fly, not ${g.memory_mb}`;
  if (g.memory_mb > max) return `${g.cpus} ${g.cpu_kind} CPU(s) allow at most ${max} MB of memory on Fly, not ${g.memory_mb}`;
  if (g.memory_mb % 256 !== 0) return `Fly memory moves in 256 MB steps; ${g.memory_mb} MB is not one`;
  return null;
}

/** What Fly would refuse in a workspace's region or tier, or null when it would accept it. */
export function specProblem(spec: { region: string | null; tier: number }): string | null {
  if (spec.region !== null && spec.region !== undefined) {
    const bad = regionProblem(spec.region);
    if (bad) return `region ${bad}`;
  }
  if (!(spec.tier in TIERS)) return `tier ${spec.tier} is not one of ${Object.keys(TIERS).join(', ')}`;
  const g = guestProblem(guestForTier(spec.tier as Tier));
  return g ? `tier ${spec.tier}: ${g}` : null;
}
