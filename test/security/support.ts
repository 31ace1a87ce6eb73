import fs from 'node:fs';
import { Writable } from 'node:stream';
import { afterAll, afterEach } from 'vitest';
import type { Logger } from 'pino';
import type { Provisioner } from '../../src/core/provisioner.js';
import { platformLogger } from '../../src/core/logging.js';
import { startPlatform, type Platform } from '../../src/platform.js';
import { api, FAST_ENV, killRecordedAgents, processEnv, tempDir, waitReady, type Api } from '../support/harness.js';

export const ADMIN = 'test-admin-token-0123456789abcdef';

export interface SecPlatform {
  p: Platform;
  dataDir: string;
  /** Admin (or, without an admin token, open) client. */
  admin: Api;
  anon: Api;
  as(token: string): Api;
  /** Everything the platform logged so far, as written (JSON lines), with the real redaction settings. */
  log(): string;
}

/**
 * A real platform in this process (process backend, real agents), logging through the platform's own logger
 * into memory so tests can search the log. Stopped, and its agents killed, after each test.
 */
export function securityPlatforms() {
  const started: { p: Platform; dataDir: string }[] = [];
  const dirs: string[] = [];
  afterEach(async () => {
    for (const { p, dataDir } of started.splice(0)) {
      await p.close();
      killRecordedAgents(dataDir);
    }
  });
  afterAll(() => {
    for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
  });

  return async function start(
    env: Record<string, string> = {},
    opts: { dataDir?: string; provisioner?: (dataDir: string, logger: Logger) => Provisioner } = {},
  ): Promise<SecPlatform> {
    const dataDir = opts.dataDir ?? tempDir('sec');
    if (!opts.dataDir) dirs.push(dataDir);
    let text = '';
    const sink = new Writable({
      write(chunk, _enc, done) {
        text += String(chunk);
        done();
      },
    });
    const fullEnv = { ...FAST_ENV, PORT: '0', MOLECULE_DATA_DIR: dataDir, CONTAINER_BACKEND: 'process', LOG_LEVEL: 'debug', ...env };
    const logger = platformLogger('debug', sink);
    const p = await startPlatform({ env: fullEnv, logger, provisioner: opts.provisioner?.(dataDir, logger) });
    started.push({ p, dataDir });
    const token = env.MOLECULE_ADMIN_TOKEN;
    return { p, dataDir, admin: api(p.url, token), anon: api(p.url), as: (t) => api(p.url, t), log: () => text };
  };
}

export async function createReady(http: Api, body: Record<string, unknown>): Promise<any> {
  const res = await http.call('POST', '/workspaces', body);
  if (res.status !== 201) throw new Error(`create failed: ${res.status} ${res.text}`);
  return waitReady(http, res.body.id);
}

/** The tokens a process-backend agent was started with, read from its environment (Linux /proc). */
export function agentTokens(ws: any): { workspace: string; agent: string } {
  const pid = ws.instance.pid as number;
  return { workspace: processEnv(pid, 'MOLECULE_WORKSPACE_TOKEN')!, agent: processEnv(pid, 'MOLECULE_AGENT_TOKEN')! };
}

export const a2aMessage = (text: string) => ({
  jsonrpc: '2.0',
  id: '1',
  method: 'message/send',
  params: { message: { role: 'user', parts: [{ kind: 'text', text }] } },
});
