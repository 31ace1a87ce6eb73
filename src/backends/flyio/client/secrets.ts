import { isNotFound } from './errors.js';
import type { FlyTransport, RetryPolicy } from './transport.js';
import type { FlyAppSecret } from './types.js';

/** App secrets (reference §11): Fly injects them into a machine's env at boot. */

/** Names and digests; Fly does not list values. */
export async function listSecrets(t: FlyTransport, opts: { retry?: boolean | Partial<RetryPolicy> } = {}): Promise<FlyAppSecret[]> {
  const r = await t.call<{ secrets?: FlyAppSecret[] }>('GET', t.secretsPath(), { action: 'secrets_list', retry: opts.retry });
  return Array.isArray(r.body?.secrets) ? r.body.secrets : [];
}

/**
 * Sets several secrets at once (AppSecretsUpdateRequest) and returns the app's new secrets version. Sent again
 * after an ambiguous failure: the same values twice leave the same secrets, and the last answer's version has them.
 */
export async function setSecrets(t: FlyTransport, values: Record<string, string>): Promise<number | undefined> {
  const r = await t.call<{ version?: number; Version?: number }>('POST', t.secretsPath(), { action: 'secrets_update', body: { values }, idempotent: true });
  const v = r.body?.version ?? r.body?.Version;
  return typeof v === 'number' ? v : undefined;
}

/** Returns false when there was no such secret (404). */
export async function deleteSecret(t: FlyTransport, name: string): Promise<boolean> {
  try {
    await t.call('DELETE', `${t.secretsPath()}/${encodeURIComponent(name)}`, { action: 'secret_delete' });
    return true;
  } catch (e) {
    if (isNotFound(e)) return false;
    throw e;
  }
}
