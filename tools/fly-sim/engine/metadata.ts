/**
 * Metadata, events, versions and logs of one machine. Metadata edits also rewrite the current version's config,
 * because Fly shows metadata changes in `versions` without minting a new version.
 */
import type { LogBuffer } from '../runner.js';
import { stripNulls } from '../spec.js';
import { deepClone, isPlainObject } from '../util.js';
import { first } from './query.js';
import type { EngineState } from './state.js';
import { err, type Json, type MachineRecord } from './types.js';
import { eventsJson } from './views.js';

export function metadataGet(e: EngineState, app: string, id: string): Record<string, string> {
  return { ...(e.machine(app, id).config.metadata ?? {}) };
}

export function metadataGetKey(e: EngineState, app: string, id: string, key: string): Json {
  const md = e.machine(app, id).config.metadata ?? {};
  if (!(key in md)) throw err(404, `metadata key ${key} not found`);
  return { value: md[key] };
}

function setMetadata(e: EngineState, m: MachineRecord, md: Record<string, string>): void {
  m.config.metadata = md;
  const cur = m.versions[m.versions.length - 1];
  if (cur) cur.config.metadata = { ...md };
  m.updatedAt = e.clock.now();
}

export function metadataSet(e: EngineState, app: string, id: string, key: string, body: unknown): void {
  const m = e.machine(app, id);
  e.validateBody('Machines_upsert_metadata', body);
  const b: Json = isPlainObject(body) ? stripNulls(body) : {};
  if (typeof b.value !== 'string') throw err(400, 'invalid_argument: value is required');
  if (m.state === 'destroyed') throw err(404, 'machine not found');
  setMetadata(e, m, { ...(m.config.metadata ?? {}), [key]: b.value });
}

export function metadataDelete(e: EngineState, app: string, id: string, key: string): void {
  const m = e.machine(app, id);
  const md = { ...(m.config.metadata ?? {}) };
  delete md[key];
  setMetadata(e, m, md);
}

export function metadataReplace(e: EngineState, app: string, id: string, body: unknown, merge: boolean): void {
  const m = e.machine(app, id);
  e.validateBody('Machines_update_metadata', body);
  const b: Json = isPlainObject(body) ? stripNulls(body) : {};
  if (b.machine_version && b.machine_version !== m.version) {
    throw err(412, `failed_precondition: machine_version ${b.machine_version} is stale, machine is at ${m.version}`);
  }
  const md = (b.metadata ?? {}) as Record<string, string>;
  setMetadata(e, m, merge ? { ...(m.config.metadata ?? {}), ...md } : { ...md });
}

export function events(e: EngineState, app: string, id: string, limitRaw: unknown): Json[] {
  const m = e.machine(app, id);
  let limit = 20;
  const l = first(limitRaw);
  if (l !== undefined && /^\d+$/.test(l)) limit = Math.min(50, Math.max(1, Number(l)));
  return eventsJson(m, limit);
}

export function versions(e: EngineState, app: string, id: string): Json[] {
  const m = e.machine(app, id);
  return [...m.versions].reverse().map((v) => ({ version: v.version, user_config: deepClone(v.config) }));
}

export function logs(m: MachineRecord): LogBuffer {
  return m.logs;
}
