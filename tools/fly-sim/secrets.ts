/**
 * App secrets (spec tag "Secrets": /apps/{app}/secrets …). Values are kept per app and are never answered except
 * when a caller asks with `show_secrets=true` (as the spec documents); lists and writes answer names and digests.
 * Every write bumps the app's secrets version, which create/update can require with `min_secrets_version`.
 */
import crypto from 'node:crypto';

type Json = any; // eslint-disable-line @typescript-eslint/no-explicit-any

interface Secret {
  value: string;
  digest: string;
  createdAt: number;
  updatedAt: number;
}

/** Valid env var names, not Fly's reserved `FLY_` prefix (a secret becomes an env var at boot). */
export const SECRET_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

export function secretNameProblem(name: string): string | null {
  if (!SECRET_NAME.test(name)) return `invalid secret name "${name}": use letters, digits and _ (a valid environment variable name)`;
  if (/^FLY_/i.test(name)) return `invalid secret name "${name}": the FLY_ prefix is reserved`;
  return null;
}

export class AppSecrets {
  private readonly byName = new Map<string, Secret>();
  version = 0;

  constructor(private readonly now: () => number) {}

  get(name: string): string | undefined {
    return this.byName.get(name)?.value;
  }

  has(name: string): boolean {
    return this.byName.has(name);
  }

  names(): string[] {
    return [...this.byName.keys()].sort();
  }

  /** Sets (string) or unsets (null) each; one version for the whole batch. */
  apply(values: Record<string, string | null>): number {
    const now = this.now();
    for (const [name, value] of Object.entries(values)) {
      if (value === null) {
        this.byName.delete(name);
        continue;
      }
      const old = this.byName.get(name);
      this.byName.set(name, { value, digest: digestOf(value), createdAt: old?.createdAt ?? now, updatedAt: now });
    }
    return ++this.version;
  }

  delete(name: string): number | null {
    if (!this.byName.delete(name)) return null;
    return ++this.version;
  }

  json(name: string, show = false): Json | null {
    const s = this.byName.get(name);
    if (!s) return null;
    const out: Json = { name, digest: s.digest, created_at: new Date(s.createdAt).toISOString(), updated_at: new Date(s.updatedAt).toISOString() };
    if (show) out.value = s.value;
    return out;
  }
}

function digestOf(value: string): string {
  return crypto.createHash('sha256').update(value).digest('hex').slice(0, 16);
}
