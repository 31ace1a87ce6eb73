/**
 * Apps and the platform's region list. Apps spring into being on first use unless autoCreateApps is off.
 */
import { stripNulls } from '../spec.js';
import { REGIONS } from '../util.js';
import type { EngineState } from './state.js';
import { err, type AppRecord, type Json } from './types.js';

export function createApp(e: EngineState, body: unknown): Json {
  e.validateBody('Apps_create', body);
  const b = (stripNulls(body ?? {}) as Json) ?? {};
  const name = b.name ?? b.app_name; // the docs example says app_name; spec and fly-go send name
  if (typeof name !== 'string' || !name) throw err(400, 'name is required');
  if (!/^[a-z0-9][a-z0-9-]{0,61}[a-z0-9]?$/.test(name)) {
    throw err(422, 'Validation failed: Name under 63 chars using numbers, lowercase letters and dashes');
  }
  if (e.apps.has(name)) throw err(422, 'Validation failed: Name has already been taken', { status: 'name_taken' });
  return appJson(e, e.ensureApp(name, b.org_slug ?? 'personal', b.network ?? 'default'));
}

export function appJson(e: EngineState, a: AppRecord): Json {
  const count = [...e.machines.values()].filter((m) => m.app === a.name && m.state !== 'destroyed').length;
  return {
    id: a.name,
    name: a.name,
    status: count > 0 ? 'deployed' : 'pending',
    machine_count: count,
    volume_count: 0,
    network: a.network,
    organization: { name: a.orgSlug, slug: a.orgSlug },
  };
}

export function listApps(e: EngineState, orgSlug?: string): Json {
  const apps = [...e.apps.values()].filter((a) => !orgSlug || a.orgSlug === orgSlug).map((a) => appJson(e, a));
  return { total_apps: apps.length, apps };
}

export async function deleteApp(e: EngineState, name: string): Promise<void> {
  e.app(name);
  const ms = [...e.machines.values()].filter((m) => m.app === name);
  for (const m of ms) {
    m.epoch++;
    m.launchPending = false;
    e.cancel(m.checkTimer);
    await m.proc?.kill();
    e.machines.delete(m.id);
  }
  for (const [id, m] of e.graveyard) if (m.app === name) e.graveyard.delete(id);
  e.apps.delete(name);
  e.appSecrets.delete(name);
}

export function regions(e: EngineState): Json {
  return { regions: REGIONS.map((r) => ({ ...r })), nearest: e.defaultRegion };
}
