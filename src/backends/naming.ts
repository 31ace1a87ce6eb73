import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';

/** `ws-<first 12 hex of the workspace id>`: every backend's name for a workspace's instance. */
export function instanceName(workspaceId: string): string {
  return `ws-${workspaceId.replace(/-/g, '').toLowerCase().slice(0, 12)}`;
}

/**
 * A stable id for this platform, kept in `<dataDir>/<fileName>`, so a backend shared by several platforms (one
 * Docker engine, one Fly app) only ever lists and removes what this platform created. Generated on first use.
 */
export function loadPlatformId(dataDir: string, fileName: string): string {
  const file = path.join(dataDir, fileName);
  const read = () => {
    try {
      const v = fs.readFileSync(file, 'utf8').trim();
      return /^[A-Za-z0-9_.-]{4,64}$/.test(v) ? v : undefined;
    } catch {
      return undefined;
    }
  };
  const existing = read();
  if (existing) return existing;
  fs.mkdirSync(dataDir, { recursive: true });
  const id = `mp-${crypto.randomBytes(8).toString('hex')}`;
  try {
    fs.writeFileSync(file, `${id}\n`, { flag: 'wx', mode: 0o644 });
    return id;
  } catch (e) {
    // Another process wrote it first: use theirs.
    const again = read();
    if (again) return again;
    throw e;
  }
}
