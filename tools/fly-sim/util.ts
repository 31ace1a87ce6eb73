import { createHash, randomBytes } from 'node:crypto';
import { constants as osConstants } from 'node:os';
import { monotonicFactory } from 'ulid';

// ---------------------------------------------------------------------------------------------------------------------
// Clock: every simulated delay, timestamp, lease expiry, token bucket and wait deadline goes through one of these.
// ---------------------------------------------------------------------------------------------------------------------

export type TimerHandle = { readonly __timer: true } | object;

export interface Clock {
  /** Milliseconds since the epoch. */
  now(): number;
  setTimeout(fn: () => void, ms: number): TimerHandle;
  clearTimeout(handle: TimerHandle): void;
}

export const realClock: Clock = {
  now: () => Date.now(),
  setTimeout(fn, ms) {
    const t = setTimeout(fn, Math.max(0, ms));
    t.unref();
    return t;
  },
  clearTimeout(handle) {
    clearTimeout(handle as NodeJS.Timeout);
  },
};

/**
 * A clock that only moves when told to. Timers fire, in due order, inside `advance()`.
 * Use it for lease expiry, token buckets, the "still active" window and wait deadlines without real sleeps.
 * Real child processes and TCP port probes still run on real time.
 */
export class ManualClock implements Clock {
  private t: number;
  private seq = 0;
  private timers = new Map<number, { due: number; fn: () => void; seq: number }>();

  constructor(startMs = Date.UTC(2026, 0, 1, 0, 0, 0)) {
    this.t = startMs;
  }

  now(): number {
    return this.t;
  }

  setTimeout(fn: () => void, ms: number): TimerHandle {
    const id = ++this.seq;
    this.timers.set(id, { due: this.t + Math.max(0, ms), fn, seq: id });
    return { id };
  }

  clearTimeout(handle: TimerHandle): void {
    const id = (handle as { id?: number }).id;
    if (id !== undefined) this.timers.delete(id);
  }

  /** Moves time forward by `ms`, running every timer that falls due, in order (timers set by timers included). */
  advance(ms: number): void {
    const target = this.t + ms;
    for (;;) {
      let next: { id: number; due: number; fn: () => void; seq: number } | undefined;
      for (const [id, tm] of this.timers) {
        if (tm.due <= target && (!next || tm.due < next.due || (tm.due === next.due && tm.seq < next.seq))) {
          next = { id, ...tm };
        }
      }
      if (!next) break;
      this.timers.delete(next.id);
      this.t = Math.max(this.t, next.due);
      next.fn();
    }
    this.t = target;
  }

  /** Number of pending timers (handy in tests). */
  pending(): number {
    return this.timers.size;
  }
}

/** Resolves after `ms` on the given clock; rejects never. Returns immediately for ms <= 0. */
export function clockSleep(clock: Clock, ms: number): Promise<void> {
  if (ms <= 0) return Promise.resolve();
  return new Promise((resolve) => clock.setTimeout(resolve, ms));
}

// ---------------------------------------------------------------------------------------------------------------------
// Identifiers
// ---------------------------------------------------------------------------------------------------------------------

const ulidFactory = monotonicFactory();

/** 26-character ULID, monotonic within this process (versions and event ids sort by creation). */
export function newUlid(nowMs: number): string {
  return ulidFactory(nowMs);
}

/** Machine id: 14 lowercase hex characters, like `1857156b526dd8`. */
export function newMachineId(): string {
  return randomBytes(7).toString('hex');
}

/** Lease nonce: 12 lowercase hex characters. */
export function newNonce(): string {
  return randomBytes(6).toString('hex');
}

export function newRequestId(nowMs: number): string {
  return `${newUlid(nowMs)}-sim`;
}

/** A 6PN-looking address (`fdaa:0:<net>:a7b:<host>:<r>:<r>:2`, 8 groups); the network group is derived from the app. */
export function newPrivateIp(app: string): string {
  const h = createHash('sha256').update(app).digest();
  const net = h.readUInt16BE(0).toString(16);
  const r = randomBytes(6);
  const g = (i: number) => r.readUInt16BE(i).toString(16);
  return `fdaa:0:${net}:a7b:${g(0)}:${g(2)}:${g(4)}:2`;
}

const ADJECTIVES = [
  'aged', 'ancient', 'autumn', 'billowing', 'bitter', 'black', 'blue', 'bold', 'broad', 'broken', 'calm', 'cold',
  'cool', 'crimson', 'curly', 'damp', 'dark', 'dawn', 'delicate', 'divine', 'dry', 'empty', 'falling', 'fancy',
  'flat', 'floral', 'fragrant', 'frosty', 'gentle', 'green', 'hidden', 'holy', 'icy', 'jolly', 'late', 'lingering',
  'little', 'lively', 'long', 'lucky', 'misty', 'morning', 'muddy', 'nameless', 'noisy', 'odd', 'old', 'orange',
  'patient', 'plain', 'polished', 'proud', 'purple', 'quiet', 'rapid', 'raspy', 'red', 'restless', 'rough', 'round',
  'royal', 'shiny', 'shy', 'silent', 'small', 'snowy', 'soft', 'solitary', 'sparkling', 'spring', 'square', 'steep',
  'still', 'summer', 'super', 'sweet', 'throbbing', 'tight', 'tiny', 'twilight', 'wandering', 'weathered', 'white',
  'wild', 'winter', 'wispy', 'withered', 'yellow', 'young',
];
const NOUNS = [
  'art', 'band', 'bar', 'base', 'bird', 'block', 'boat', 'bonus', 'bread', 'breeze', 'brook', 'bush', 'butterfly',
  'cake', 'cell', 'cherry', 'cloud', 'credit', 'darkness', 'dawn', 'dew', 'disk', 'dream', 'dust', 'feather', 'field',
  'fire', 'firefly', 'flower', 'fog', 'forest', 'frog', 'frost', 'glade', 'glitter', 'grass', 'hall', 'hat', 'haze',
  'heart', 'hill', 'king', 'lab', 'lake', 'leaf', 'limit', 'math', 'meadow', 'mode', 'moon', 'morning', 'mountain',
  'mouse', 'mud', 'night', 'paper', 'pine', 'poetry', 'pond', 'queen', 'rain', 'recipe', 'resonance', 'rice',
  'river', 'salad', 'scene', 'sea', 'shadow', 'shape', 'silence', 'sky', 'smoke', 'snow', 'snowflake', 'sound',
  'star', 'sun', 'sunset', 'surf', 'term', 'thunder', 'tooth', 'tree', 'truth', 'union', 'unit', 'violet', 'voice',
  'water', 'waterfall', 'wave', 'wildflower', 'wind', 'wood',
];

/** `adjective-noun-NNNN`, like `aged-thunder-7371`. */
export function newMachineName(): string {
  const b = randomBytes(4);
  const adj = ADJECTIVES[b[0] % ADJECTIVES.length];
  const noun = NOUNS[b[1] % NOUNS.length];
  const n = (b.readUInt16BE(2) % 9000) + 1000;
  return `${adj}-${noun}-${n}`;
}

// ---------------------------------------------------------------------------------------------------------------------
// Time formatting and durations
// ---------------------------------------------------------------------------------------------------------------------

/** `2024-01-01T00:00:05Z` (RFC 3339, second precision, as the Machines API prints). */
export function isoSeconds(ms: number): string {
  return new Date(Math.floor(ms / 1000) * 1000).toISOString().replace('.000Z', 'Z');
}

/** Go's `time.Time.String()` in UTC without fractions: `2022-10-20 19:59:06 +0000 UTC`. */
export function goTimeString(ms: number): string {
  const iso = new Date(Math.floor(ms / 1000) * 1000).toISOString();
  return `${iso.slice(0, 10)} ${iso.slice(11, 19)} +0000 UTC`;
}

const DURATION_UNITS_MS: Record<string, number> = {
  ns: 1e-6,
  us: 1e-3,
  'µs': 1e-3,
  'μs': 1e-3,
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
};

/**
 * Parses a Go duration string (`"10s"`, `"1m30s"`, `"250ms"`, `"0"`) to milliseconds.
 * Numbers are nanoseconds (the older dialect; fly-go reads numbers as ns). Returns an Error for bad input,
 * with Go's own wording (`time: invalid duration "abc"`).
 */
export function parseGoDuration(v: unknown): number | Error {
  if (typeof v === 'number') {
    if (!Number.isFinite(v)) return new Error(`time: invalid duration ${JSON.stringify(String(v))}`);
    return v / 1e6;
  }
  if (typeof v !== 'string') return new Error(`time: invalid duration ${JSON.stringify(String(v))}`);
  const s = v.trim();
  if (s === '0' || s === '+0' || s === '-0') return 0;
  const re = /^([+-])?((?:(?:\d+(?:\.\d*)?|\.\d+)(?:ns|us|µs|μs|ms|s|m|h))+)$/;
  const m = re.exec(s);
  if (!m) return new Error(`time: invalid duration ${JSON.stringify(v)}`);
  let total = 0;
  const part = /(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)/g;
  let p: RegExpExecArray | null;
  while ((p = part.exec(m[2])) !== null) total += Number(p[1]) * DURATION_UNITS_MS[p[2]];
  return m[1] === '-' ? -total : total;
}

/** Restart's `timeout` query: a Go duration or a plain number of seconds. */
export function parseSecondsOrDuration(v: string): number | Error {
  if (/^\d+(\.\d+)?$/.test(v.trim())) return Number(v) * 1000;
  return parseGoDuration(v);
}

// ---------------------------------------------------------------------------------------------------------------------
// Signals
// ---------------------------------------------------------------------------------------------------------------------

const SIGNALS = osConstants.signals as Record<string, number>;

/** Accepts `"SIGTERM"`, `"TERM"`, `15` or `"15"`; returns the canonical name or null. */
export function normalizeSignal(v: unknown): NodeJS.Signals | null {
  if (typeof v === 'number' || (typeof v === 'string' && /^\d+$/.test(v))) {
    const n = Number(v);
    for (const [name, num] of Object.entries(SIGNALS)) if (num === n) return name as NodeJS.Signals;
    return null;
  }
  if (typeof v !== 'string') return null;
  const up = v.toUpperCase();
  const name = up.startsWith('SIG') ? up : `SIG${up}`;
  return name in SIGNALS ? (name as NodeJS.Signals) : null;
}

export function signalNumber(name: string): number {
  return SIGNALS[name] ?? 0;
}

// ---------------------------------------------------------------------------------------------------------------------
// Regions (reference §10) and guest presets (§9)
// ---------------------------------------------------------------------------------------------------------------------

export interface RegionRow {
  code: string;
  name: string;
  gateway_available: boolean;
  deprecated: boolean;
  requires_paid_plan: boolean;
  geo_region: string;
  latitude: number;
  longitude: number;
}

const R = (
  code: string,
  name: string,
  geo: string,
  lat: number,
  lon: number,
  gateway = true,
): RegionRow => ({
  code,
  name,
  gateway_available: gateway,
  deprecated: false,
  requires_paid_plan: false,
  geo_region: geo,
  latitude: lat,
  longitude: lon,
});

/** The 18 current regions of reference §10 (gru and jnb have no gateway). */
export const REGIONS: readonly RegionRow[] = [
  R('ams', 'Amsterdam, Netherlands', 'europe', 52.374, 4.8897),
  R('arn', 'Stockholm, Sweden', 'europe', 59.6512, 17.9178),
  R('bom', 'Mumbai, India', 'asia_pacific', 19.0972, 72.8746),
  R('cdg', 'Paris, France', 'europe', 48.8566, 2.3522),
  R('dfw', 'Dallas, Texas (US)', 'north_america', 32.7767, -96.797),
  R('ewr', 'Secaucus, NJ (US)', 'north_america', 40.7898, -74.0566),
  R('fra', 'Frankfurt, Germany', 'europe', 50.1109, 8.6821),
  R('gru', 'Sao Paulo, Brazil', 'south_america', -23.5505, -46.6333, false),
  R('iad', 'Ashburn, Virginia (US)', 'north_america', 39.0438, -77.4874),
  R('jnb', 'Johannesburg, South Africa', 'africa', -26.2041, 28.0473, false),
  R('lax', 'Los Angeles, California (US)', 'north_america', 33.9416, -118.4085),
  R('lhr', 'London, United Kingdom', 'europe', 51.5072, -0.1276),
  R('nrt', 'Tokyo, Japan', 'asia_pacific', 35.6762, 139.6503),
  R('ord', 'Chicago, Illinois (US)', 'north_america', 41.8781, -87.6298),
  R('sin', 'Singapore, Singapore', 'asia_pacific', 1.3521, 103.8198),
  R('sjc', 'San Jose, California (US)', 'north_america', 37.3382, -121.8863),
  R('syd', 'Sydney, Australia', 'asia_pacific', -33.8688, 151.2093),
  R('yyz', 'Toronto, Canada', 'north_america', 43.6532, -79.3832),
];

export const REGION_CODES: ReadonlySet<string> = new Set(REGIONS.map((r) => r.code));

export interface GuestSpec {
  cpu_kind: string;
  cpus: number;
  memory_mb: number;
  gpu_kind?: string;
  gpus?: number;
}

/** Size presets (`config.size`, deprecated but still accepted). */
export function presetGuest(size: string): GuestSpec | null {
  let m = /^shared-cpu-(\d+)x$/.exec(size);
  if (m && [1, 2, 4, 6, 8].includes(Number(m[1]))) {
    const cpus = Number(m[1]);
    return { cpu_kind: 'shared', cpus, memory_mb: 256 * cpus };
  }
  m = /^performance-(\d+)x$/.exec(size);
  if (m && [1, 2, 4, 6, 8, 10, 12, 14, 16].includes(Number(m[1]))) {
    const cpus = Number(m[1]);
    return { cpu_kind: 'performance', cpus, memory_mb: 2048 * cpus };
  }
  if (['a10', 'l40s', 'a100-40gb', 'a100-80gb'].includes(size)) {
    return { cpu_kind: 'performance', cpus: 8, memory_mb: 32768, gpu_kind: size, gpus: 1 };
  }
  return null;
}

export const GUEST_LIMITS: Record<string, { cpus: number[]; minPerCpu: number; maxPerCpu: number }> = {
  shared: { cpus: [1, 2, 4, 6, 8], minPerCpu: 256, maxPerCpu: 2048 },
  performance: { cpus: [1, 2, 4, 6, 8, 10, 12, 14, 16], minPerCpu: 2048, maxPerCpu: 8192 },
};

// ---------------------------------------------------------------------------------------------------------------------
// Image references
// ---------------------------------------------------------------------------------------------------------------------

export interface ImageRef {
  registry: string;
  repository: string;
  tag: string;
  digest: string;
  labels: Record<string, string>;
}

/** Splits `ghcr.io/molecule-ai/workspace-hermes:latest` into registry / repository / tag (+ a stable fake digest). */
export function parseImageRef(image: string): ImageRef {
  let rest = image.trim();
  let digest = '';
  const at = rest.indexOf('@');
  if (at >= 0) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
  }
  let tag = '';
  const lastSlash = rest.lastIndexOf('/');
  const colon = rest.lastIndexOf(':');
  if (colon > lastSlash) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
  }
  let registry = 'registry-1.docker.io';
  let repository = rest;
  const firstSlash = rest.indexOf('/');
  if (firstSlash > 0) {
    const first = rest.slice(0, firstSlash);
    if (first.includes('.') || first.includes(':') || first === 'localhost') {
      registry = first;
      repository = rest.slice(firstSlash + 1);
    }
  }
  if (registry === 'registry-1.docker.io' && !repository.includes('/')) repository = `library/${repository}`;
  if (!tag && !digest) tag = 'latest';
  if (!digest) digest = `sha256:${createHash('sha256').update(`${registry}/${repository}:${tag}`).digest('hex')}`;
  return { registry, repository, tag, digest, labels: {} };
}

/** `registry/repository:tag`, the form of FLY_IMAGE_REF in Fly's docs (`registry.fly.io/my-app:deployment-…`). */
export function imageRefString(ref: ImageRef): string {
  return `${ref.registry}/${ref.repository}${ref.tag ? `:${ref.tag}` : `@${ref.digest}`}`;
}

// ---------------------------------------------------------------------------------------------------------------------
// Misc
// ---------------------------------------------------------------------------------------------------------------------

export function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

export function deepClone<T>(v: T): T {
  return v === undefined ? v : (JSON.parse(JSON.stringify(v)) as T);
}

export function truthyQuery(v: unknown): boolean {
  if (Array.isArray(v)) v = v[v.length - 1];
  return typeof v === 'string' && ['1', 'true', 't', 'yes', 'y'].includes(v.toLowerCase());
}

export function firstQuery(v: unknown): string | undefined {
  if (Array.isArray(v)) return typeof v[0] === 'string' ? v[0] : undefined;
  return typeof v === 'string' ? v : undefined;
}
