import crypto from 'node:crypto';

/**
 * Workspace secrets as Fly app secrets. A machine's `config.env` is readable by anyone who can read the machine
 * through the Machines API, so secret values are written as app secrets and the machine config only names them
 * (`processes[0].secrets`, reference fly-machines-openapi3.json fly.MachineProcess). Fly injects them as env at boot.
 *
 * Names: `MOLECULE_<P>_<W>_K_<KEY>` or `MOLECULE_<P>_<W>_H_<HASH>`, where P tags this platform (several platforms
 * may share one app, and one platform's sweep must not delete another's secrets), W is the first 12 hex of the
 * workspace id, and a key that is not already an upper-case name is replaced by a hash of it (env keys are
 * case-sensitive; the two forms cannot collide).
 */

/** What a machine config says about one secret (fly.MachineSecret). */
export interface MachineSecretRef {
  env_var: string;
  name: string;
}

/** Fly app secret names we write: upper-case letters, digits and `_`, not starting with a digit. */
const FLY_SECRET_NAME = /^[A-Z_][A-Z0-9_]*$/;

function sha256Hex(s: string): string {
  return crypto.createHash('sha256').update(s).digest('hex').toUpperCase();
}

/** `MOLECULE_<8 hex of the platform id's hash>_`: every secret this platform writes starts with it. */
export function platformSecretPrefix(platformId: string): string {
  return `MOLECULE_${sha256Hex(platformId).slice(0, 8)}_`;
}

export function workspaceTag(workspaceId: string): string {
  return workspaceId.replace(/-/g, '').toUpperCase().slice(0, 12);
}

export function workspaceSecretPrefix(platformId: string, workspaceId: string): string {
  return `${platformSecretPrefix(platformId)}${workspaceTag(workspaceId)}_`;
}

export function appSecretName(platformId: string, workspaceId: string, key: string): string {
  const suffix = /^[A-Z][A-Z0-9_]*$/.test(key) ? `K_${key}` : `H_${sha256Hex(key).slice(0, 24)}`;
  const name = `${workspaceSecretPrefix(platformId, workspaceId)}${suffix}`;
  if (!FLY_SECRET_NAME.test(name)) throw new Error(`not a valid Fly secret name: ${name}`);
  return name;
}

/** The workspace tag (12 upper-case hex) of a secret this platform wrote, or null for any other secret. */
export function ownedSecretWorkspaceTag(platformId: string, name: string): string | null {
  const prefix = platformSecretPrefix(platformId);
  if (!name.startsWith(prefix)) return null;
  const m = /^([0-9A-F]{12})_[KH]_[A-Z0-9_]+$/.exec(name.slice(prefix.length));
  return m ? m[1] : null;
}


/**
 * Splits an instance's env into what may sit in the machine config and the secret values, which become app
 * secrets referenced by name. Keys listed as secret but absent from env are ignored.
 */
export function splitSecretEnv(
  platformId: string,
  workspaceId: string,
  env: Record<string, string>,
  secretKeys: readonly string[] = [],
): { env: Record<string, string>; values: Record<string, string>; refs: MachineSecretRef[] } {
  const plain: Record<string, string> = { ...env };
  const values: Record<string, string> = {};
  const refs: MachineSecretRef[] = [];
  for (const key of [...new Set(secretKeys)].sort()) {
    if (!Object.hasOwn(env, key)) continue;
    const name = appSecretName(platformId, workspaceId, key);
    values[name] = env[key];
    refs.push({ env_var: key, name });
    delete plain[key];
  }
  return { env: plain, values, refs };
}
