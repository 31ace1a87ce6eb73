import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { ConfigError } from './config.js';

/**
 * AES-256-GCM sealing for secrets and re-deliverable tokens. The associated data binds a ciphertext to its
 * place (scope and key), so a sealed value copied to another row does not open.
 */
export class Sealer {
  private constructor(private readonly key: Buffer) {}

  /** Key from MOLECULE_SECRETS_KEY (base64, 32 bytes), or generated once into the data dir with mode 0600. */
  static load(dataDir: string, configured?: string): Sealer {
    if (configured) {
      const key = Buffer.from(configured, 'base64');
      if (key.length !== 32) throw new ConfigError('MOLECULE_SECRETS_KEY must be 32 bytes, base64-encoded (openssl rand -base64 32)');
      return new Sealer(key);
    }
    const file = path.join(dataDir, 'secrets.key');
    fs.mkdirSync(dataDir, { recursive: true });
    try {
      fs.writeFileSync(file, crypto.randomBytes(32).toString('base64'), { mode: 0o600, flag: 'wx' });
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    }
    // A key file copied around with a looser mode is tightened back: only the platform's user may read it.
    if ((fs.statSync(file).mode & 0o077) !== 0) fs.chmodSync(file, 0o600);
    const key = Buffer.from(fs.readFileSync(file, 'utf8').trim(), 'base64');
    if (key.length !== 32) throw new ConfigError(`${file} does not hold a 32-byte base64 key; restore it, or set MOLECULE_SECRETS_KEY`);
    return new Sealer(key);
  }

  seal(plaintext: string, aad: string): string {
    const iv = crypto.randomBytes(12);
    const c = crypto.createCipheriv('aes-256-gcm', this.key, iv);
    c.setAAD(Buffer.from(aad));
    const ct = Buffer.concat([c.update(plaintext, 'utf8'), c.final()]);
    return `v1:${Buffer.concat([iv, c.getAuthTag(), ct]).toString('base64')}`;
  }

  open(sealed: string, aad: string): string {
    if (!sealed.startsWith('v1:')) throw new Error('unknown sealed value format');
    const raw = Buffer.from(sealed.slice(3), 'base64');
    const d = crypto.createDecipheriv('aes-256-gcm', this.key, raw.subarray(0, 12));
    d.setAAD(Buffer.from(aad));
    d.setAuthTag(raw.subarray(12, 28));
    return Buffer.concat([d.update(raw.subarray(28)), d.final()]).toString('utf8');
  }
}

/** A bearer token: random, prefixed by kind so a leaked one is recognisable. */
export function mintToken(kind: 'workspace' | 'agent'): string {
  return `${kind === 'workspace' ? 'mws' : 'mag'}_${crypto.randomBytes(32).toString('base64url')}`;
}

/** Tokens are looked up by hash; they are long random values, so an unsalted SHA-256 is enough. */
export function hashToken(token: string): string {
  return crypto.createHash('sha256').update(token).digest('hex');
}

/** Constant-time string comparison; hashing first keeps the lengths from leaking too. */
export function safeEqual(a: string, b: string): boolean {
  const ha = crypto.createHash('sha256').update(a).digest();
  const hb = crypto.createHash('sha256').update(b).digest();
  return crypto.timingSafeEqual(ha, hb);
}
