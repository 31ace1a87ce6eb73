import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { hashToken, mintToken, Sealer } from '../../src/core/crypto.js';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'molecule-crypto-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

describe('tokens', () => {
  it('are long, random and prefixed by kind', () => {
    const a = mintToken('workspace');
    const b = mintToken('workspace');
    expect(a).toMatch(/^mws_[A-Za-z0-9_-]{43}$/);
    expect(mintToken('agent')).toMatch(/^mag_/);
    expect(a).not.toBe(b);
  });

  it('hash to a stable digest that does not contain the token', () => {
    const t = mintToken('agent');
    expect(hashToken(t)).toBe(hashToken(t));
    expect(hashToken(t)).toMatch(/^[0-9a-f]{64}$/);
    expect(hashToken(t)).not.toContain(t.slice(4, 12));
    expect(hashToken(t)).not.toBe(hashToken(mintToken('agent')));
  });
});

describe('sealer', () => {
  it('generates a 0600 key once and reuses it', () => {
    const s1 = Sealer.load(dir);
    const sealed = s1.seal('sk-secret', 'secret:global:OPENAI_API_KEY');
    const file = path.join(dir, 'secrets.key');
    expect(fs.statSync(file).mode & 0o777).toBe(0o600);
    const s2 = Sealer.load(dir);
    expect(s2.open(sealed, 'secret:global:OPENAI_API_KEY')).toBe('sk-secret');
  });

  it('does not reveal the plaintext and binds it to its place', () => {
    const s = Sealer.load(dir);
    const sealed = s.seal('sk-secret', 'secret:ws1:KEY');
    expect(sealed).not.toContain('sk-secret');
    expect(s.seal('sk-secret', 'secret:ws1:KEY')).not.toBe(sealed);
    expect(() => s.open(sealed, 'secret:ws2:KEY')).toThrow();
  });

  it('rejects a configured key of the wrong size, and uses a right one', () => {
    expect(() => Sealer.load(dir, Buffer.alloc(16).toString('base64'))).toThrow(/32 bytes/);
    const key = Buffer.alloc(32, 7).toString('base64');
    const a = Sealer.load(dir, key);
    expect(Sealer.load(path.join(dir, 'other'), key).open(a.seal('x', 'aad'), 'aad')).toBe('x');
  });
});
