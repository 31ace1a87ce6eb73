import { Command, Option } from 'commander';
import { randomUUID } from 'node:crypto';
import { Api, ApiCallError } from './api.js';
import { ago, eventLine, statusText, table } from './format.js';
import { resolveWorkspace } from './resolve.js';
import type { z } from 'zod';
import type { PlatformEvent } from '../core/types.js';
import type { WorkspaceView } from '../server/schemas.js';

// The API's own shapes (type-only: nothing of the server is loaded).
type Workspace = z.infer<typeof WorkspaceView> & { heartbeat: { current_task?: string | null } | null };
type Event = PlatformEvent & { data: Record<string, any> };

const DEFAULT_URL = 'http://127.0.0.1:8080';

function program(): Command {
  const cli = new Command('molecule')
    .description('Manage Molecule agent workspaces from a terminal (the same REST API as the web UI and curl)')
    .addOption(new Option('--url <url>', 'platform URL').env('MOLECULE_URL').default(DEFAULT_URL))
    .addOption(new Option('--token <token>', 'admin token, when the platform has one').env('MOLECULE_ADMIN_TOKEN'))
    .option('--json', 'print the API JSON instead of text')
    .showHelpAfterError()
    .configureOutput({ outputError: (s, write) => write(s) });

  const ctx = () => {
    const o = cli.opts<{ url: string; token?: string; json?: boolean }>();
    return { api: new Api(o.url, o.token), json: !!o.json };
  };
  const print = (json: boolean, value: unknown, text: () => string) => console.log(json ? JSON.stringify(value, null, 2) : text());

  cli
    .command('health')
    .description('platform status: backend, database, workspaces by status')
    .action(async () => {
      const { api, json } = ctx();
      const h = await api.json('GET', '/healthz');
      print(json, h, () => {
        const { name, ...backend } = h.backend ?? {};
        const counts = Object.entries(h.workspaces ?? {}).map(([s, n]) => `${s}=${n}`).join(' ') || 'none';
        return [
          `platform  ${api.baseUrl}  ${h.status}  version ${h.version}  up ${h.uptime_s}s`,
          `backend   ${name}  ${Object.entries(backend).map(([k, v]) => `${k}=${typeof v === 'object' ? JSON.stringify(v) : v}`).join(' ')}`,
          `database  ${h.database?.kind}`,
          `workspaces ${counts}`,
        ].join('\n');
      });
    });

  cli
    .command('ls')
    .alias('list')
    .description('list workspaces, oldest first (every page of the list unless --limit)')
    .option('-s, --status <statuses>', 'only these statuses, comma-separated (removed ones only when asked for)')
    .option('-q, --search <text>', 'only workspaces whose name contains this, ignoring case')
    .option('--parent <workspace>', 'only the children of this workspace (id, prefix or name)')
    .option('-n, --limit <n>', 'at most this many workspaces (default: all of them, fetched 500 a request)', (v) => positiveInt(v, '--limit'))
    .addHelpText('after', '\nThe API gives the list in pages (GET /workspaces?limit=&cursor=); ls follows them to the end, or to --limit.')
    .action(async (o: { status?: string; search?: string; parent?: string; limit?: number }) => {
      const { api, json } = ctx();
      const q = new URLSearchParams();
      if (o.status) q.set('status', o.status);
      if (o.search) q.set('q', o.search);
      if (o.parent) q.set('parent_id', await resolveWorkspace(api, o.parent));
      const list = await api.pages<Workspace>(`/workspaces${q.size ? `?${q}` : ''}`, { max: o.limit });
      print(json, list, () =>
        list.length === 0
          ? q.size
            ? 'no workspace matches'
            : 'no workspaces (create one with: molecule create <name>)'
          : table(
              ['ID', 'NAME', 'STATUS', 'TIER', 'REGION', 'BACKEND', 'HEARTBEAT', 'TASK'],
              list.map((w) => [
                w.id.slice(0, 8),
                w.name,
                statusText(w),
                `T${w.tier}`,
                w.region ?? '-',
                w.backend,
                ago(w.last_heartbeat_at),
                w.heartbeat?.current_task ?? '-',
              ]),
            ),
      );
    });

  cli
    .command('create <name>')
    .description('create a workspace; with --wait, follow its boot until ready or failed')
    .option('-r, --role <role>', "the agent's role")
    .option('-t, --tier <n>', 'tier 1-4', (v) => Number(v))
    .option('--runtime <runtime>', 'runtime image name')
    .option('--region <region>', 'region (Fly Machines backend)')
    .option('--parent <workspace>', 'parent workspace (id, prefix or name)')
    .option('-e, --env <KEY=VALUE>', 'environment variable (repeatable)', collectPairs, {})
    .option('--secret <KEY=VALUE>', 'secret, stored encrypted (repeatable)', collectPairs, {})
    .option('--idle-timeout <seconds>', 'sleep after this many idle seconds ("never": never; default MOLECULE_IDLE_TIMEOUT_S)', (v) => (v === 'never' ? null : Number(v)))
    .option('-w, --wait', 'wait until the workspace is ready (exit 1 if it fails)')
    .option('--timeout <seconds>', 'give up waiting after this long', (v) => Number(v), 180)
    .action(async (name: string, o: CreateOpts) => {
      const { api, json } = ctx();
      const body: Record<string, unknown> = { name };
      if (o.role !== undefined) body.role = o.role;
      if (o.tier !== undefined) body.tier = o.tier;
      if (o.runtime !== undefined) body.runtime = o.runtime;
      if (o.region !== undefined) body.region = o.region;
      if (o.parent !== undefined) body.parent_id = await resolveWorkspace(api, o.parent);
      if (Object.keys(o.env).length) body.env = o.env;
      if (Object.keys(o.secret).length) body.secrets = o.secret;
      if (o.idleTimeout !== undefined) body.idle_timeout_s = o.idleTimeout;
      const ws = await api.json<Workspace>('POST', '/workspaces', body);
      if (!o.wait) return print(json, ws, () => `${ws.id}  ${ws.name}  ${ws.status}`);
      if (!json) console.log(`${ws.id}  ${ws.name}  created; waiting for ready…`);
      const final = await waitSettled(api, ws.id, o.timeout * 1000, json ? undefined : (ev) => console.log('  ' + eventLine(ev)));
      print(json, final, () => `${final.id}  ${final.name}  ${statusText(final)}`);
      if (final.status !== 'ready') process.exitCode = 1;
    });

  cli
    .command('show <workspace>')
    .description('one workspace in full')
    .action(async (ref: string) => {
      const { api, json } = ctx();
      const ws = await api.json<Workspace>('GET', `/workspaces/${await resolveWorkspace(api, ref)}`);
      print(json, ws, () =>
        Object.entries(ws)
          .map(([k, v]) => `${(k + ':').padEnd(19)}${v === null ? '-' : typeof v === 'object' ? JSON.stringify(v) : v}`)
          .join('\n'),
      );
    });

  cli
    .command('mv <workspace>')
    .alias('move')
    .description('move a workspace under another one (its A2A access rules follow at once; no restart)')
    .requiredOption('--parent <workspace>', 'the new parent (id, prefix or name), or "none" for top level')
    .action(async (ref: string, o: { parent: string }) => {
      const { api, json } = ctx();
      const id = await resolveWorkspace(api, ref);
      const parent = o.parent === 'none' ? null : await resolveWorkspace(api, o.parent);
      const ws = await api.json<Workspace>('PATCH', `/workspaces/${id}`, { parent_id: parent });
      print(json, ws, () => `${ws.id}  ${ws.name}  parent: ${ws.parent_id ?? 'none'}`);
    });

  for (const action of ['restart', 'pause', 'resume', 'wake'] as const) {
    cli
      .command(`${action} <workspace>`)
      .description(action === 'wake' ? 'wake a sleeping workspace without sending it a message' : `${action} the workspace's instance`)
      .action(async (ref: string) => {
        const { api, json } = ctx();
        const ws = await api.json<Workspace>('POST', `/workspaces/${await resolveWorkspace(api, ref)}/${action}`);
        print(json, ws, () => `${ws.id}  ${ws.name}  ${statusText(ws)}`);
      });
  }

  cli
    .command('rm <workspace>')
    .alias('delete')
    .description('delete a workspace: destroy its instance and revoke its tokens')
    .option('--children', 'also delete its child workspaces')
    .action(async (ref: string, o: { children?: boolean }) => {
      const { api, json } = ctx();
      const id = await resolveWorkspace(api, ref);
      const ws = await api.json<Workspace>('DELETE', `/workspaces/${id}${o.children ? '?confirm=true' : ''}`);
      print(json, ws, () => `${ws.id}  ${ws.name}  ${statusText(ws)}`);
    });

  cli
    .command('logs <workspace>')
    .description("the instance's output")
    .option('-f, --follow', 'keep streaming new lines')
    .option('-n, --tail <lines>', 'only the last N lines', (v) => Number(v))
    .action(async (ref: string, o: { follow?: boolean; tail?: number }) => {
      const { api } = ctx();
      const q = new URLSearchParams();
      if (o.tail !== undefined) q.set('tail', String(o.tail));
      if (o.follow) q.set('follow', '1');
      const res = await api.fetch('GET', `/workspaces/${await resolveWorkspace(api, ref)}/logs${q.size ? `?${q}` : ''}`, undefined, 'text/plain');
      for await (const chunk of res.body ?? []) process.stdout.write(chunk);
    });

  cli
    .command('events [workspace]')
    .description("a workspace's timeline, or every event with --follow")
    .option('-f, --follow', 'keep streaming new events')
    .action(async (ref: string | undefined, o: { follow?: boolean }) => {
      const { api, json } = ctx();
      const id = ref ? await resolveWorkspace(api, ref) : undefined;
      const show = (ev: Event) => console.log(json ? JSON.stringify(ev) : eventLine(ev, !id));
      let after: number | undefined;
      if (id) {
        const past = await api.json<Event[]>('GET', `/workspaces/${id}/events`);
        past.forEach(show);
        after = past.at(-1)?.id ?? 0;
      }
      if (!o.follow) return;
      const q = new URLSearchParams();
      if (id) q.set('workspace_id', id);
      if (after !== undefined) q.set('after', String(after));
      for await (const ev of api.sse('GET', `/events${q.size ? `?${q}` : ''}`)) if (ev.data) show(ev.data as Event);
    });

  cli
    .command('ask <workspace> <text...>')
    .description('send the agent a message over A2A and print its reply')
    .option('--no-stream', 'wait for the whole reply (message/send) instead of streaming it')
    .option('--context <id>', 'continue a conversation (contextId)')
    .action(async (ref: string, words: string[], o: { stream: boolean; context?: string }) => {
      const { api, json } = ctx();
      const id = await resolveWorkspace(api, ref);
      const message = {
        kind: 'message',
        role: 'user',
        messageId: randomUUID(),
        parts: [{ kind: 'text', text: words.join(' ') }],
        ...(o.context ? { contextId: o.context } : {}),
      };
      const rpc = { jsonrpc: '2.0', id: randomUUID(), method: o.stream ? 'message/stream' : 'message/send', params: { message } };
      if (!o.stream) {
        const answer = await api.json('POST', `/workspaces/${id}/a2a`, rpc);
        if (json) {
          // JSON-RPC errors come with HTTP 200: the exit status follows the body's error, not the HTTP status.
          if (answer?.error) process.exitCode = 1;
          return console.log(JSON.stringify(answer, null, 2));
        }
        return writeReply(answer);
      }
      let printed = false;
      for await (const ev of api.sse('POST', `/workspaces/${id}/a2a`, rpc)) {
        if (json) {
          if (ev.data?.error) process.exitCode = 1;
          console.log(JSON.stringify(ev.data));
          continue;
        }
        printed = writeStreamEvent(ev.data) || printed;
      }
      if (printed && !json) process.stdout.write('\n');
    });

  const secrets = cli.command('secrets').description('write-only secrets: names come back, values never do');
  const scopePath = async (api: Api, ref?: string) => (ref ? `/workspaces/${await resolveWorkspace(api, ref)}/secrets` : '/settings/secrets');
  secrets
    .command('ls')
    .description('secret names (global, or of one workspace)')
    .option('--workspace <workspace>', 'a workspace instead of the global ones')
    .action(async (o: { workspace?: string }) => {
      const { api, json } = ctx();
      const list = await api.json<{ key: string; updated_at: string }[]>('GET', await scopePath(api, o.workspace));
      print(json, list, () => (list.length ? table(['KEY', 'UPDATED'], list.map((s) => [s.key, s.updated_at])) : 'no secrets'));
    });
  secrets
    .command('set <key> [value]')
    .description('set a secret; without a value it is read from standard input (keeps it out of shell history)')
    .option('--workspace <workspace>', 'a workspace instead of global')
    .action(async (key: string, value: string | undefined, o: { workspace?: string }) => {
      const { api, json } = ctx();
      const v = value ?? (await readStdin());
      const res = await api.json<{ key: string; result: string }>('PUT', `${await scopePath(api, o.workspace)}/${encodeURIComponent(key)}`, { value: v });
      // Running instances keep the old value until restarted; the platform marks them needs_restart.
      print(json, res, () => `${res.result} ${res.key} (running workspaces it affects need a restart: molecule ls shows them)`);
    });
  secrets
    .command('rm <key>')
    .description('delete a secret')
    .option('--workspace <workspace>', 'a workspace instead of global')
    .action(async (key: string, o: { workspace?: string }) => {
      const { api } = ctx();
      await api.fetch('DELETE', `${await scopePath(api, o.workspace)}/${encodeURIComponent(key)}`);
      console.log(`deleted ${key}`);
    });

  return cli;
}

type CreateOpts = {
  role?: string;
  tier?: number;
  runtime?: string;
  region?: string;
  parent?: string;
  env: Record<string, string>;
  secret: Record<string, string>;
  wait?: boolean;
  timeout: number;
  /** Seconds, or null for "never". */
  idleTimeout?: number | null;
};

function positiveInt(v: string, what: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new ApiCallError(0, 'usage', `${what} must be a positive integer, got "${v}"`);
  return n;
}

function collectPairs(pair: string, acc: Record<string, string>): Record<string, string> {
  const eq = pair.indexOf('=');
  if (eq <= 0) throw new ApiCallError(0, 'usage', `expected KEY=VALUE, got "${pair}"`);
  return { ...acc, [pair.slice(0, eq)]: pair.slice(eq + 1) };
}

async function readStdin(): Promise<string> {
  if (process.stdin.isTTY) process.stderr.write('value (end with Ctrl-D): ');
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8').replace(/\r?\n$/, '');
}

/** Follows the workspace's events until it is ready, failed or removed; returns the final record. */
async function waitSettled(api: Api, id: string, timeoutMs: number, onEvent?: (ev: Event) => void): Promise<Workspace> {
  const settled = (s: string) => s === 'ready' || s === 'failed' || s === 'removed';
  const past = await api.json<Event[]>('GET', `/workspaces/${id}/events`);
  past.forEach((ev) => onEvent?.(ev));
  let ws = await api.json<Workspace>('GET', `/workspaces/${id}`);
  if (settled(ws.status)) return ws;
  const stream = api.sse('GET', `/events?workspace_id=${id}&after=${past.at(-1)?.id ?? 0}`);
  const timer = setTimeout(() => {
    console.error(`molecule: still ${ws.status} after ${timeoutMs / 1000}s; giving up waiting (the workspace keeps booting)`);
    process.exit(1);
  }, timeoutMs);
  try {
    for await (const { data } of stream) {
      const ev = data as Event | undefined;
      if (!ev) continue;
      onEvent?.(ev);
      if (ev.type === 'workspace.status' && settled(String(ev.data.to))) break;
    }
  } finally {
    clearTimeout(timer);
    await stream.return(undefined);
  }
  ws = await api.json<Workspace>('GET', `/workspaces/${id}`);
  return ws;
}

function textOf(parts: unknown): string {
  return Array.isArray(parts) ? parts.map((p) => (p && typeof p.text === 'string' ? p.text : '')).join('') : '';
}

/**
 * A JSON-RPC error answer (the platform sends them all with HTTP 200): the platform's own errors name their reason
 * in error.data.code (workspace_not_ready, a2a_forbidden, …); the agent's carry only the JSON-RPC code.
 */
function rpcFailure(error: any): ApiCallError {
  const reason = typeof error?.data?.code === 'string' ? error.data.code : `a2a_${error?.code}`;
  const platform = typeof error?.code === 'number' && error.code <= -32030 && error.code >= -32039;
  return new ApiCallError(0, reason, `${platform ? 'the platform' : 'the agent'} answered an error: ${error?.message} (${reason})`);
}

function writeReply(answer: any): void {
  if (answer?.error) throw rpcFailure(answer.error);
  const r = answer?.result;
  const text = r?.kind === 'task' ? textOf(r.artifacts?.flatMap((a: any) => a.parts)) || textOf(r.status?.message?.parts) : textOf(r?.parts);
  console.log(text);
}

/** Prints one streamed A2A event's text; true when it printed something. */
function writeStreamEvent(frame: any): boolean {
  if (frame?.error) throw rpcFailure(frame.error);
  const r = frame?.result;
  if (!r) return false;
  if (r.kind === 'message' || (r.parts && !r.kind)) {
    process.stdout.write(textOf(r.parts));
    return true;
  }
  if (r.kind === 'artifact-update') {
    const t = textOf(r.artifact?.parts);
    process.stdout.write(t);
    return t.length > 0;
  }
  if (r.kind === 'status-update' && r.status?.state === 'failed') {
    throw new ApiCallError(0, 'a2a_task_failed', `the agent failed: ${textOf(r.status?.message?.parts) || 'no reason given'}`);
  }
  return false;
}

export async function main(argv = process.argv): Promise<void> {
  try {
    await program().parseAsync(argv);
  } catch (err) {
    if (err instanceof ApiCallError) {
      process.stderr.write(`molecule: ${err.message}${err.status ? ` (${err.code}, HTTP ${err.status})` : ''}\n`);
      process.exitCode = err.code === 'usage' ? 2 : 1;
      return;
    }
    throw err;
  }
}
