/**
 * App secrets as the API sees them, and as a boot sees them: the env a machine gets is computed when it
 * boots, so a change reaches a machine only on its next boot (as on Fly).
 */
import { AppSecrets, secretNameProblem } from '../secrets.js';
import { isPlainObject, truthyQuery } from '../util.js';
import type { EngineState } from './state.js';
import { err, type Json, type MachineRecord } from './types.js';

/** The app's secrets (the app is looked up, or auto-created, as for machines). */
export function secretsOf(e: EngineState, app: string): AppSecrets {
  const a = e.app(app);
  let s = e.appSecrets.get(a.name);
  if (!s) {
    s = new AppSecrets(() => e.clock.now());
    e.appSecrets.set(a.name, s);
  }
  return s;
}

export function secretsList(e: EngineState, app: string, query: Record<string, unknown> = {}): Json {
  const s = secretsOf(e, app);
  const show = truthyQuery(query.show_secrets);
  return { secrets: s.names().map((n) => s.json(n, show)) };
}

export function secretsUpdate(e: EngineState, app: string, body: unknown): Json {
  const s = secretsOf(e, app);
  const raw = isPlainObject(body) ? (body as Json).values : undefined;
  // Fly's Go type is map[string]*string: null unsets. The schema says string, so nulls are taken out first.
  const withoutNulls = isPlainObject(raw) ? Object.fromEntries(Object.entries(raw).filter(([, v]) => v !== null)) : raw;
  e.validateBody('Secrets_update', isPlainObject(body) ? { ...(body as Json), values: withoutNulls } : body);
  const values = (isPlainObject(raw) ? raw : {}) as Record<string, string | null>;
  for (const name of Object.keys(values)) {
    const bad = secretNameProblem(name);
    if (bad) throw err(400, bad);
  }
  const version = s.apply(values);
  const secrets = Object.keys(values)
    .map((n) => s.json(n))
    .filter((x) => x !== null);
  return { version, Version: version, secrets };
}

export function secretGet(e: EngineState, app: string, name: string, query: Record<string, unknown> = {}): Json {
  const j = secretsOf(e, app).json(name, truthyQuery(query.show_secrets));
  if (!j) throw err(404, `secret ${name} not found`);
  return j;
}

export function secretSet(e: EngineState, app: string, name: string, body: unknown): Json {
  const s = secretsOf(e, app);
  e.validateBody('Secret_create', body);
  const bad = secretNameProblem(name);
  if (bad) throw err(400, bad);
  const value = isPlainObject(body) ? (body as Json).value : undefined;
  if (typeof value !== 'string') throw err(400, 'value is required');
  const version = s.apply({ [name]: value });
  return { ...s.json(name), version, Version: version };
}

export function secretDelete(e: EngineState, app: string, name: string): Json {
  const version = secretsOf(e, app).delete(name);
  if (version === null) throw err(404, `secret ${name} not found`);
  return { version, Version: version };
}

/** create/update with `min_secrets_version` newer than the app's secrets: the machine could not get them. */
export function requireSecretsVersion(e: EngineState, app: string, min: unknown): void {
  if (typeof min !== 'number' || min <= 0) return;
  const have = secretsOf(e, app).version;
  if (min > have) throw err(400, `min_secrets_version ${min} is newer than the app's secrets (version ${have})`);
}

/**
 * The env a boot adds from app secrets: every app secret by name (Fly's default), unless the first process sets
 * `ignore_app_secrets`; plus each `processes[0].secrets` reference ({env_var, name?}). A referenced secret that
 * does not exist is an error (the boot fails with it).
 */
export function secretEnv(e: EngineState, m: MachineRecord): { env: Record<string, string> } | { error: string } {
  const s = secretsOf(e, m.app);
  const proc: Json = Array.isArray(m.config.processes) ? m.config.processes[0] : undefined;
  const env: Record<string, string> = {};
  if (proc?.ignore_app_secrets !== true) for (const n of s.names()) env[n] = s.get(n)!;
  const refs: Json[] = Array.isArray(proc?.secrets) ? proc.secrets : [];
  for (const [i, r] of refs.entries()) {
    const name = r?.name || r?.env_var;
    if (!r?.env_var) return { error: `config.processes[0].secrets[${i}]: env_var is required` };
    if (!s.has(name)) {
      return { error: `secret ${name} (env ${r.env_var}, config.processes[0].secrets[${i}]) does not exist in app ${m.app}; set it with POST /v1/apps/${m.app}/secrets` };
    }
    env[r.env_var] = s.get(name)!;
  }
  return { env };
}
