import crypto from 'node:crypto';
import net from 'node:net';
import path from 'node:path';
import Database from 'better-sqlite3';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { waitReady } from '../support/harness.js';
import { a2aMessage, ADMIN, agentTokens, createReady, securityPlatforms, type SecPlatform } from './support.js';

const start = securityPlatforms();
const RUNS = Number(process.env.HOSTILE_RUNS ?? 1200);

/**
 * A hostile-input suite: generated requests across every route the API describes (plus the undocumented ones),
 * each invalid by construction in at least one way a caller controls (credentials, ids, keys, query, body, size,
 * content type). The platform must answer each with a 4xx {error, code} (a JSON-RPC error on the A2A proxy), or
 * a 2xx where the request is a valid read, never a 5xx; must stay up; and must not change any stored data.
 */

type Kind = 'public' | 'read' | 'stream' | 'write' | 'registry' | 'a2a';
interface RouteDef {
  method: string;
  path: string;
  params: string[];
  body: boolean;
  kind: Kind;
}

function isDiscovery(p: string): boolean {
  return p === '/agents' || p.endsWith('/agent-card') || p.endsWith('/agent-card.json');
}

function kindOf(method: string, p: string): Kind {
  if (p === '/healthz' || p === '/openapi.json' || p === '/' || p.startsWith('/docs')) return 'public';
  if (p.startsWith('/registry/')) return 'registry';
  if (p.endsWith('/a2a')) return 'a2a';
  if (method === 'GET') return p === '/events' || p === '/ws' || p.endsWith('/logs') ? 'stream' : 'read';
  return 'write';
}

// ---- hostile values ------------------------------------------------------------------------------------------

const NASTY = [
  '../../etc/passwd',
  '..\\..\\windows\\win.ini',
  '%2e%2e%2f%2e%2e%2fetc%2fpasswd',
  '....//....//',
  "1' OR '1'='1",
  "'; DROP TABLE workspaces; --",
  '" OR ""="',
  '1; SELECT * FROM secrets',
  '$(reboot)',
  '`id`',
  '<script>alert(1)</script>',
  '{{7*7}}',
  '${jndi:ldap://x/a}',
  '\u0000',
  '\u202e\u0000\u0007\u001b[31m',
  'ñ̃😀𝕏\uFEFF',
  'null',
  'undefined',
  '-1',
  '1e309',
  '00000000-0000-0000-0000-00000000000',
  'ffffffff-ffff-ffff-ffff-ffffffffffffff',
  ' ',
  '.',
  '..',
  '__proto__',
  'constructor',
  'x'.repeat(5000),
];

const hostileString = fc.oneof(
  fc.constantFrom(...NASTY),
  fc.string({ unit: 'binary', maxLength: 60 }),
  fc.string({ unit: 'grapheme', maxLength: 60 }),
  fc.string({ minLength: 3000, maxLength: 40_000 }),
  fc.stringMatching(/^[A-Z_]{1,10}$/).map((s) => `MOLECULE_${s}`),
);

/** A path segment that is never a real workspace or secret key (unless the caller is refused anyway). */
const hostileSegment = fc.oneof(hostileString, fc.uuid().map(() => crypto.randomUUID()));
const printable = fc.stringMatching(/^[\x21-\x7e]{1,100}$/);

/** Percent-encodes UTF-8 bytes; lone surrogates become U+FFFD instead of throwing. */
function enc(s: string): string {
  return [...Buffer.from(s, 'utf8')].map((b) => (/[A-Za-z0-9_~-]/.test(String.fromCharCode(b)) ? String.fromCharCode(b) : `%${b.toString(16).padStart(2, '0')}`)).join('');
}

const wrongType = fc.oneof(
  fc.integer(),
  fc.double(),
  fc.boolean(),
  fc.constant(null),
  fc.array(fc.anything(), { maxLength: 3 }),
  fc.dictionary(fc.string({ maxLength: 5 }), fc.anything(), { maxKeys: 3 }),
);

/** Field-wise wrong or hostile values for what each body schema expects, always with at least one poison. */
function poisonedObject(route: RouteDef): fc.Arbitrary<Record<string, unknown>> {
  const extra = fc.dictionary(hostileString.filter((k) => k.length < 100), fc.oneof(hostileString, wrongType), { maxKeys: 4 });
  if (route.path === '/registry/register') {
    return fc.record({ url: fc.oneof(wrongType, fc.string({ minLength: 2049, maxLength: 5000 })), agent_card: fc.oneof(fc.object(), wrongType) }).chain((b) =>
      extra.map((e) => ({ ...e, ...b })),
    );
  }
  if (route.path === '/registry/heartbeat') {
    return fc
      .record({
        active_tasks: fc.oneof(fc.integer({ max: -1 }), fc.string(), fc.double({ min: 0.1, max: 0.9 })),
        current_task: fc.oneof(fc.string(), fc.constant(null)),
        error_rate: fc.oneof(fc.double({ min: 1.01, noNaN: true }), fc.constant(-1), fc.string()),
        uptime_s: fc.oneof(fc.integer(), fc.string()),
      })
      .chain((b) => extra.map((e) => ({ ...e, ...b })));
  }
  if (route.kind === 'a2a') {
    return fc.oneof(
      fc.record({ jsonrpc: fc.oneof(fc.constant('1.0'), wrongType), method: fc.oneof(hostileString, wrongType), id: fc.oneof(hostileString, wrongType) }),
      fc.record({ jsonrpc: fc.constant('2.0'), method: fc.oneof(fc.constant(''), wrongType), id: fc.integer() }),
      fc.record({
        jsonrpc: fc.constant('2.0'),
        method: fc.constantFrom('message/send', 'message/stream', 'SendMessage'),
        params: fc.oneof(fc.constant({}), fc.record({ message: fc.oneof(fc.integer(), fc.string(), fc.constant(null), fc.array(fc.anything(), { maxLength: 3 })) })),
      }),
      fc.record({ role: hostileString, parts: fc.oneof(hostileString, fc.integer()) }),
      extra.map((e) => ({ ...e, hostile: true })),
    );
  }
  // Strict schemas (create, patch, secrets): any unknown key is refused; known keys get wrong types too.
  const fields = { name: fc.oneof(wrongType, hostileString), role: fc.oneof(wrongType, hostileString), tier: fc.oneof(fc.integer({ min: 5 }), fc.string(), fc.double({ min: 1.1, max: 1.9 })), runtime: hostileString, region: fc.oneof(hostileString, wrongType), parent_id: hostileString, env: fc.oneof(wrongType, fc.dictionary(hostileString, hostileString, { maxKeys: 3 })), secrets: wrongType, value: fc.oneof(wrongType, fc.string({ minLength: 40_000, maxLength: 50_000 })) };
  return fc.record(fields, { requiredKeys: [] }).chain((b) => extra.map((e) => ({ ...e, ...b, [`__hostile_${Object.keys(e).length}`]: 1 })));
}

interface Body {
  payload: string | undefined;
  contentType: string | undefined;
}

function hostileBody(route: RouteDef): fc.Arbitrary<Body> {
  const json = (v: unknown): Body => ({ payload: JSON.stringify(v), contentType: 'application/json' });
  return fc.oneof(
    fc.constantFrom('{', '{"name":', '[1,2', 'nul', '{"a":1}}', '\u0000', '{"name":"x",}', "{'name':'x'}", '', ' ', '{"__proto__":{"admin":true}}x').map((p) => ({ payload: p, contentType: 'application/json' })),
    hostileString.map((p) => ({ payload: p, contentType: 'application/json' })),
    fc.oneof(fc.integer(), fc.string(), fc.constant(null), fc.boolean(), fc.array(fc.jsonValue(), { maxLength: 4 })).map(json),
    fc.tuple(hostileString, fc.constantFrom('text/plain', 'application/xml', 'multipart/form-data; boundary=x', 'application/x-www-form-urlencoded', 'application/json; charset=utf-7', '')).map(([p, t]) => ({ payload: p, contentType: t || undefined })),
    fc.integer({ min: 300 * 1024, max: 2 * 1024 * 1024 }).map((n) => json({ name: 'x'.repeat(n), value: 'y', jsonrpc: '2.0' })),
    poisonedObject(route).map(json),
  );
}

function hostileQuery(mustBeInvalid: boolean): fc.Arbitrary<string> {
  const pairs = fc.array(fc.tuple(fc.oneof(fc.constantFrom('status', 'parent_id', 'after', 'limit', 'tail', 'follow', 'confirm', 'workspace_id', 'token'), hostileString), hostileString), { maxLength: 3 });
  return pairs.map((ps) => {
    const all = mustBeInvalid ? [...ps, ['__hostile', '1'] as [string, string]] : ps;
    return all.length ? `?${all.map(([k, v]) => `${enc(k)}=${enc(v)}`).join('&')}` : '';
  });
}

// ---- the request generator -----------------------------------------------------------------------------------

type Auth = { kind: 'none' } | { kind: 'garbage'; value: string } | { kind: 'token'; name: 'admin' | 'nearAdmin' | 'revoked' | 'agent' | 'workspace' };

interface Ctx {
  tokens: Record<'admin' | 'nearAdmin' | 'revoked' | 'agent' | 'workspace', string>;
  realIds: string[];
  realKeys: string[];
}

interface Req {
  route: RouteDef;
  method: string;
  url: string;
  headers: Record<string, string>;
  payload: string | undefined;
  privileged: boolean;
}

function requestArb(routes: RouteDef[], ctx: Ctx): fc.Arbitrary<Req> {
  // Half the requests carry the admin token, so most get past authentication and meet the validation.
  const token = (name: keyof Ctx['tokens']) => fc.constant({ kind: 'token' as const, name });
  const auth: fc.Arbitrary<Auth> = fc.oneof(
    { arbitrary: fc.constant({ kind: 'none' as const }), weight: 1 },
    { arbitrary: printable.map((value) => ({ kind: 'garbage' as const, value })), weight: 1 },
    { arbitrary: fc.oneof(token('nearAdmin'), token('revoked'), token('agent')), weight: 2 },
    { arbitrary: token('workspace'), weight: 2 },
    { arbitrary: token('admin'), weight: 6 },
  );
  const where = fc.oneof({ arbitrary: fc.constant('header'), weight: 6 }, { arbitrary: fc.constantFrom('query', 'basic'), weight: 1 });
  return fc.tuple(fc.constantFrom(...routes), auth, where).chain(([route, a, where]) => {
    const token = a.kind === 'token' ? ctx.tokens[a.name] : a.kind === 'garbage' ? a.value : undefined;
    // Privileged: a caller whose credentials would let a valid request through. Its request must then be invalid
    // in some other way, or be a read.
    const privileged =
      (a.kind === 'token' && a.name === 'admin' && where !== 'basic' && (where === 'header' || route.method === 'GET')) ||
      (a.kind === 'token' && a.name === 'workspace' && where === 'header' && (route.kind === 'registry' || route.kind === 'a2a')) ||
      // A2A discovery (agent cards, the catalog) is a read a workspace token may make too (GETs also take ?token=).
      (a.kind === 'token' && a.name === 'workspace' && where !== 'basic' && route.method === 'GET' && isDiscovery(route.path));
    const safeRead = route.kind === 'read' || route.kind === 'public';
    const realAllowed = !privileged || safeRead || route.body;
    const segment = realAllowed ? fc.oneof(hostileSegment, fc.constantFrom(...ctx.realIds, ...ctx.realKeys)) : hostileSegment;
    const params = fc.tuple(...route.params.map(() => segment));
    const query = hostileQuery(privileged && route.kind === 'stream');
    const body = route.body || route.method !== 'GET' ? hostileBody(route).map((b) => (route.body || Math.random() < 0.5 ? b : { payload: undefined, contentType: undefined })) : fc.constant({ payload: undefined, contentType: undefined } as Body);
    const idem = fc.option(printable.map((s) => s.repeat(1 + (s.length % 4))), { nil: undefined });
    return fc.tuple(params, query, body, idem).map(([ps, q, b, key]) => {
      let i = 0;
      let url = route.path.replace(/\{[^}]+\}/g, () => enc(ps[i++]!));
      const headers: Record<string, string> = {};
      if (token && where === 'header') headers.authorization = `Bearer ${token}`;
      if (token && where === 'basic') headers.authorization = `Basic ${Buffer.from(`x:${token}`).toString('base64')}`;
      url += q;
      if (token && where === 'query') url += `${url.includes('?') ? '&' : '?'}token=${enc(token)}`;
      if (b.contentType) headers['content-type'] = b.contentType;
      if (key && route.path === '/workspaces' && route.method === 'POST') headers['idempotency-key'] = key;
      if (route.path === '/ws') headers.connection = 'close';
      return { route, method: route.method, url, headers, payload: b.payload, privileged };
    });
  });
}

function within<T>(p: Promise<T>, ms: number, what: () => string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([p, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(what())), ms)))]).finally(() => clearTimeout(timer));
}

// ---- what must not change --------------------------------------------------------------------------------------

function snapshot(s: SecPlatform) {
  const db = new Database(path.join(s.dataDir, 'molecule.db'), { readonly: true });
  try {
    // Heartbeats and A2A calls (the activity idle workspaces sleep by) legitimately touch these; everything else is frozen.
    const workspaces = (db.prepare('select * from workspaces order by id').all() as Record<string, unknown>[]).map(
      ({ updated_at, last_heartbeat_at, heartbeat, active_at, busy, ...rest }) => rest,
    );
    return {
      workspaces,
      tokens: db.prepare('select * from tokens order by id').all(),
      secrets: db.prepare('select * from secrets order by scope, key').all(),
      events: db.prepare('select count(*) as n from events').get(),
    };
  } finally {
    db.close();
  }
}

describe('hostile input', () => {
  it(`answers ${RUNS} generated hostile requests across every route with 4xx {error, code}, stays up, and changes nothing`, async () => {
    const s = await start({ MOLECULE_ADMIN_TOKEN: ADMIN, HEARTBEAT_INTERVAL_S: '60', LOG_LEVEL: 'warn' });
    const parent = await createReady(s.admin, { name: 'parent', secrets: { PARENT_KEY: 'parent-secret' } });
    let child = await createReady(s.admin, { name: 'child', parent_id: parent.id });
    const revoked = agentTokens(child).workspace;
    expect((await s.admin.call('POST', `/workspaces/${child.id}/restart`)).status).toBe(202);
    child = await waitReady(s.admin, child.id, { until: (w) => w.ready_at > child.ready_at });
    await s.admin.call('PUT', '/settings/secrets/GLOBAL_KEY', { value: 'global-secret' });
    const ctx: Ctx = {
      tokens: { admin: ADMIN, nearAdmin: `${ADMIN.slice(0, -1)}X`, revoked, agent: agentTokens(child).agent, workspace: agentTokens(child).workspace },
      realIds: [parent.id, child.id],
      realKeys: ['PARENT_KEY', 'GLOBAL_KEY'],
    };

    const spec = (await s.p.app.inject({ method: 'GET', url: '/openapi.json', headers: { authorization: `Bearer ${ADMIN}` } })).json();
    const routes: RouteDef[] = [];
    for (const [p, ops] of Object.entries<Record<string, any>>(spec.paths)) {
      for (const [method, op] of Object.entries<any>(ops)) {
        const params = (op.parameters ?? []).filter((x: any) => x.in === 'path').map((x: any) => x.name);
        routes.push({ method: method.toUpperCase(), path: p, params, body: !!op.requestBody || p.endsWith('/a2a'), kind: kindOf(method.toUpperCase(), p) });
      }
    }
    expect(routes.length).toBeGreaterThanOrEqual(20);
    // Served but not in the description.
    for (const [method, p] of [['GET', '/openapi.json'], ['GET', '/metrics'], ['GET', '/docs'], ['GET', '/ws'], ['GET', '/'], ['POST', '/nowhere/{id}'], ['DELETE', '/settings']]) {
      const params = [...p.matchAll(/\{(\w+)\}/g)].map((m) => m[1]!);
      routes.push({ method, path: p, params, body: false, kind: kindOf(method, p) });
    }

    const before = snapshot(s);
    const seen = new Map<string, number>();
    let count = 0;
    await fc.assert(
      fc.asyncProperty(requestArb(routes, ctx), async (r) => {
        count++;
        const res = await within(s.p.app.inject({ method: r.method as any, url: r.url, headers: r.headers, payload: r.payload }), 10_000, () => `no answer within 10 s: ${JSON.stringify(r).slice(0, 2000)}`);
        const where = `${r.method} ${r.url.slice(0, 200)} (${r.privileged ? 'privileged' : 'unprivileged'}) → ${res.statusCode} ${res.body.slice(0, 300)}`;
        seen.set(`${res.statusCode}`, (seen.get(`${res.statusCode}`) ?? 0) + 1);
        expect(res.statusCode, where).toBeLessThan(500);
        if (r.route.kind === 'a2a' && res.statusCode === 200 && res.body.includes('"jsonrpc"')) {
          // The A2A proxy's refusals are JSON-RPC errors in HTTP 200, as JSON-RPC clients expect.
          const body = JSON.parse(res.body);
          if (body.error) {
            expect(body.error, where).toMatchObject({ code: expect.any(Number), message: expect.any(String) });
            // The proxy's own errors name their reason; an agent's (e.g. -32601) need not.
            if (body.error.code <= -32030 && body.error.code >= -32039) expect(body.error.data?.code, where).toEqual(expect.any(String));
            expect(res.headers['content-type'], where).toMatch(/application\/json/);
            return;
          }
        }
        if (res.statusCode < 400) {
          // Only valid reads may succeed: the public ones, or reads by a caller allowed to read.
          expect(r.route.kind === 'public' || (r.privileged && (r.route.kind === 'read' || r.route.kind === 'stream')), where).toBe(true);
          return;
        }
        const body = JSON.parse(res.body);
        if (body.jsonrpc) {
          expect(r.route.kind, where).toBe('a2a');
          expect(body.error, where).toMatchObject({ code: expect.any(Number), message: expect.any(String) });
        } else {
          expect(body, where).toMatchObject({ error: expect.any(String), code: expect.any(String) });
        }
        expect(res.headers['content-type'], where).toMatch(/application\/json/);
      }),
      { numRuns: RUNS, seed: Number(process.env.HOSTILE_SEED ?? Date.now() % 2 ** 31), endOnFailure: true },
    );
    expect(count).toBeGreaterThanOrEqual(RUNS);
    // The mix really was hostile: mostly refusals of several kinds.
    for (const status of ['400', '401', '403', '404']) expect(seen.get(status) ?? 0, JSON.stringify([...seen])).toBeGreaterThan(10);

    // Up, over a real socket, and still working end to end.
    expect((await s.anon.call('GET', '/healthz')).status).toBe(200);
    const reply = await s.admin.call('POST', `/workspaces/${child.id}/a2a`, a2aMessage('What is your name?'));
    expect(reply.body.result.parts[0].text).toContain('child');
    expect(snapshot(s)).toEqual(before);
  }, 120_000);
  it('survives malformed HTTP on a real socket: garbage, bad header bytes, huge headers, broken framing', async () => {
    const s = await start({ MOLECULE_ADMIN_TOKEN: ADMIN, LOG_LEVEL: 'warn' });
    const port = Number(new URL(s.p.url).port);
    const raw = (bytes: string | Buffer) =>
      new Promise<string>((resolve) => {
        const sock = net.connect(port, '127.0.0.1', () => sock.end(bytes));
        let out = '';
        sock.on('data', (d) => (out += d));
        sock.on('close', () => resolve(out));
        sock.on('error', () => resolve(out));
        setTimeout(() => sock.destroy(), 3000);
      });
    const cases: (string | Buffer)[] = [
      'hello\r\n\r\n',
      Buffer.from([0, 1, 2, 3, 255, 254, 13, 10, 13, 10]),
      'GET /workspaces HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \x00\x7f\r\n\r\n',
      `GET /workspaces HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(70_000)}\r\n\r\n`,
      `POST /workspaces HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${ADMIN}\r\nContent-Type: application/json\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n`,
      `POST /workspaces HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${ADMIN}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n`,
      `POST /workspaces HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${ADMIN}\r\nContent-Type: application/json\r\nContent-Length: -1\r\n\r\n{}`,
      `GET /${'%'.repeat(3000)} HTTP/1.1\r\nHost: x\r\n\r\n`,
      `GET /workspaces/%ZZ HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${ADMIN}\r\n\r\n`,
      'GET /workspaces HTTP/9.9\r\nHost: x\r\n\r\n',
      `DELETE /settings/secrets/K HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${ADMIN}\r\nAuthorization: Bearer x\r\n\r\n`,
    ];
    for (const c of cases) {
      const out = await raw(c);
      const status = Number(out.match(/^HTTP\/1\.[01] (\d{3})/)?.[1] ?? 0);
      // Either refused at the HTTP layer (4xx, or the connection closed) — never a server error.
      expect(status === 0 || (status >= 400 && status < 500), `${String(c).slice(0, 80)} → ${out.slice(0, 200)}`).toBe(true);
    }
    expect((await s.anon.call('GET', '/healthz')).status).toBe(200);
    expect((await s.admin.call('GET', '/settings/secrets')).body).toEqual([]);
  });
});

describe('authentication before validation', () => {
  /** Every name a route's schema declares: body properties (nested too), query, path and header parameters. */
  function schemaFields(op: any): string[] {
    const names = new Set<string>();
    const walk = (s: any) => {
      if (!s || typeof s !== 'object') return;
      for (const [k, v] of Object.entries<any>(s.properties ?? {})) {
        names.add(k);
        walk(v);
      }
      for (const r of s.required ?? []) names.add(r);
      for (const key of ['anyOf', 'oneOf', 'allOf']) for (const sub of s[key] ?? []) walk(sub);
      walk(s.items);
      if (typeof s.additionalProperties === 'object') walk(s.additionalProperties);
    };
    for (const c of Object.values<any>(op.requestBody?.content ?? {})) walk(c.schema);
    for (const p of op.parameters ?? []) names.add(p.name);
    return [...names];
  }

  const word = (name: string) => new RegExp(`(^|[^A-Za-z0-9_-])${name.replace(/[.*+?^${}()|[\]\\-]/g, '\\$&')}([^A-Za-z0-9_-]|$)`);

  it('answers an unauthenticated, invalid request with 401 on every route that needs a token, naming no schema field', async () => {
    // With an admin token every route but the public ones needs one; without, the agent routes still need theirs.
    for (const adminToken of [ADMIN, undefined]) {
      const s = await start(adminToken ? { MOLECULE_ADMIN_TOKEN: adminToken, LOG_LEVEL: 'warn' } : { LOG_LEVEL: 'warn' });
      const spec = (await s.admin.call('GET', '/openapi.json')).body;
      let routes = 0;
      let agentRoutes = 0;
      for (const [p, ops] of Object.entries<Record<string, any>>(spec.paths)) {
        for (const [m, op] of Object.entries<any>(ops)) {
          const method = m.toUpperCase();
          const agent = p.startsWith('/registry/');
          if (!agent && (!adminToken || kindOf(method, p) === 'public')) continue;
          routes++;
          if (agent) agentRoutes++;
          const fields = schemaFields(op);
          const url = `${s.p.url}${p.replace(/\{[^}]+\}/g, 'not-an-id')}?__bogus=1`;
          const withBody = method !== 'GET' && method !== 'DELETE';
          // Each invalid in its own way: empty, wrong type, unknown fields and wrongly typed known ones, broken JSON.
          const poison = Object.fromEntries(fields.map((f) => [f, { __bogus: [1] }]));
          const bodies = withBody ? ['{}', '[]', JSON.stringify({ ...poison, __bogus: 1 }), '{"broken": '] : [undefined];
          for (const authorization of [undefined, 'Bearer not-a-token', `Basic ${Buffer.from(`x:${ADMIN}`).toString('base64')}`]) {
            for (const body of bodies) {
              const res = await fetch(url, {
                method,
                headers: { ...(authorization ? { authorization } : {}), ...(body !== undefined ? { 'content-type': 'application/json' } : {}), 'idempotency-key': '' },
                body,
              });
              const text = await res.text();
              const where = `${method} ${p} (auth ${authorization?.split(' ')[0] ?? 'none'}, body ${body?.slice(0, 60)}) → ${res.status} ${text.slice(0, 400)}`;
              expect(res.status, where).toBe(401);
              const answer = JSON.parse(text);
              expect(Object.keys(answer).sort(), where).toEqual(['code', 'error']);
              expect(['unauthorized', 'invalid_token', 'missing_token'], where).toContain(answer.code);
              for (const f of fields) expect(answer.error, `${where}: names the field ${f}`).not.toMatch(word(f));
              expect(answer.error, where).not.toMatch(/\b(body|querystring|params|headers)\b/);
            }
          }
        }
      }
      expect(agentRoutes).toBe(2);
      expect(routes).toBeGreaterThanOrEqual(adminToken ? 20 : 2);
    }
  });
});
