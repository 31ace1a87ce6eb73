import fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { api, killRecordedAgents, launchPlatform, pidAlive, processEnv, tempDir, waitFor, waitReady, type Api, type PlatformProcess } from '../support/harness.js';
import { printPlatformLogOnFailure } from '../support/hooks.js';
import { runSeedSteps } from '../support/seed.js';

/**
 * The product as a user meets it: `npm start` (process backend), the seed's curl walkthrough, then every
 * lifecycle path — restart, pause/resume, a killed agent, a platform restart that adopts, and delete.
 */
// One story, told in order: each step starts where the previous one left the workspace (never shuffled).
describe('process backend, end to end', { shuffle: false }, () => {
  const dataDir = tempDir('e2e');
  let platform: PlatformProcess;
  let http: Api;
  let ws: string;

  const get = async () => {
    const r = await http.call('GET', `/workspaces/${ws}`);
    if (r.status !== 200 && r.status !== 410) throw new Error(`GET /workspaces/${ws} → ${r.status} ${r.text}`);
    return r.body;
  };
  const status = async () => (await get())?.status;
  const pid = async () => (await get()).instance.pid as number;
  const ask = async (text: string) => {
    const r = await http.call('POST', `/workspaces/${ws}/a2a`, {
      jsonrpc: '2.0',
      id: 'q',
      method: 'message/send',
      params: { message: { role: 'user', parts: [{ kind: 'text', text }] } },
    });
    return r;
  };
  const events = async () => {
    const r = await http.call('GET', `/workspaces/${ws}/events`);
    if (r.status !== 200) throw new Error(`GET /workspaces/${ws}/events → ${r.status} ${r.text}`);
    return r.body as any[];
  };

  beforeAll(async () => {
    platform = await launchPlatform({ dataDir });
    http = api(platform.url);
  });

  afterAll(async () => {
    await platform?.stop();
    killRecordedAgents(dataDir);
    fs.rmSync(dataDir, { recursive: true, force: true });
  });
  // On failure the platform's own log says why: keep its tail in the test output.
  printPlatformLogOnFailure(() => platform, 20);

  it('runs the seed walkthrough steps 3, 4, 6 and 7 exactly as written', async () => {
    const run = await runSeedSteps([3, 4, 6, 7], platform.port);
    expect(run.code, run.stderr).toBe(0);
    const health = JSON.parse(run.stdout.slice(0, run.stdout.indexOf('\nWorkspace ID:')));
    expect(health).toMatchObject({ status: 'ok', backend: { name: 'process' }, database: { kind: 'sqlite' } });
    const id = run.stdout.match(/Workspace ID: ([0-9a-f-]{36})/)?.[1];
    expect(id).toBeTruthy();
    ws = id!;
    const reply = run.stdout.trim().split('\n').pop()!;
    // jq prints the reply as a JSON string; the built-in responder names the region (process backend: "local").
    expect(JSON.parse(reply)).toMatch(/\blocal\b/);
    expect(await status()).toBe('ready');
  }, 120_000);

  it('records the boot timeline with reasons', async () => {
    const evs = await events();
    const steps = evs.filter((e) => e.type === 'workspace.step').map((e) => e.data.step);
    expect(steps).toEqual(expect.arrayContaining(['instance requested', 'instance started', 'registered']));
    const statuses = evs.filter((e) => e.type === 'workspace.status').map((e) => e.data.to);
    expect(statuses.slice(0, 2)).toEqual(['provisioning', 'ready']);
    for (const e of evs.filter((x) => x.type === 'workspace.status')) expect(e.data.reason).toBeTruthy();
  });

  it('applies the tier: heap cap always, memory and CPU cgroups where /healthz says so', async () => {
    const agent = await pid();
    const cmdline = fs.readFileSync(`/proc/${agent}/cmdline`, 'utf8').split('\0');
    expect(cmdline).toContain('--max-old-space-size=384'); // tier 2: 75 % of 512 MB
    const limits = (await http.call('GET', '/healthz')).body.backend.limits;
    const cgroups = fs.readFileSync(`/proc/${agent}/cgroup`, 'utf8');
    if (limits.memory) {
      const line = cgroups.split('\n').find((l) => /(^|:|,)memory(,|:)/.test(l) || l.startsWith('0::'))!;
      const dir = line.split(':')[2];
      expect(dir).toMatch(/molecule\/ws-/);
      const v1 = `/sys/fs/cgroup/memory${dir}/memory.limit_in_bytes`;
      const v2 = `/sys/fs/cgroup${dir}/memory.max`;
      expect(Number(fs.readFileSync(fs.existsSync(v1) ? v1 : v2, 'utf8'))).toBe(512 * 1024 * 1024);
    } else {
      expect(cgroups).not.toMatch(/molecule\/ws-/);
    }
  });

  it('serves the logs, and follows them live', async () => {
    const logs = await http.call('GET', `/workspaces/${ws}/logs?tail=50`);
    expect(logs.status).toBe(200);
    expect(logs.headers.get('content-type')).toMatch(/text\/plain/);
    expect(logs.text).toMatch(/starting hermes agent on 127\.0\.0\.1:\d+ \(tier 2\)/);
    const abort = new AbortController();
    const res = await fetch(`${platform.url}/workspaces/${ws}/logs?tail=0&follow=1`, { signal: abort.signal });
    const reader = res.body!.getReader();
    await ask('What is your role?'); // the agent logs each turn
    let seen = '';
    await waitFor('a new log line', async () => {
      seen += new TextDecoder().decode((await reader.read()).value);
      return seen.includes('\n');
    });
    abort.abort();
    expect(seen).not.toMatch(/starting hermes agent/); // tail=0: only what came after
  });

  it('answers the region a workspace asks for', async () => {
    const r = await http.call('POST', '/workspaces', { name: 'in-iad', region: 'iad' });
    expect(r.status).toBe(201);
    const other = r.body.id;
    await waitReady(http, other, { what: 'iad workspace ready' });
    const a = await http.call('POST', `/workspaces/${other}/a2a`, { role: 'user', parts: [{ kind: 'text', text: 'What region are you running in?' }] });
    expect(a.status).toBe(200);
    expect(a.body.result.parts[0].text).toMatch(/\biad\b/);
    expect((await http.call('DELETE', `/workspaces/${other}`)).status).toBe(202);
  });

  it('restarts on request with a new process', async () => {
    const before = await pid();
    const r = await http.call('POST', `/workspaces/${ws}/restart`);
    expect(r.status).toBe(202);
    expect(r.body.status).toBe('provisioning');
    await waitReady(http, ws, { what: 'ready after restart' });
    const after = await pid();
    expect(after).not.toBe(before);
    expect(pidAlive(before)).toBe(false);
    expect((await ask('What region are you running in?')).body.result.parts[0].text).toMatch(/local/);
  });

  it('pauses (instance stopped, A2A refused with workspace_not_ready) and resumes', async () => {
    const running = await pid();
    const p = await http.call('POST', `/workspaces/${ws}/pause`);
    expect(p.status).toBe(200);
    expect(p.body.status).toBe('paused');
    expect(pidAlive(running)).toBe(false);
    const refused = await ask('hello?');
    expect(refused.status).toBe(200); // a JSON-RPC error: HTTP 200, the reason in error.data
    expect(refused.body).toMatchObject({ jsonrpc: '2.0', id: 'q', error: { code: -32030, data: { code: 'workspace_not_ready', status: 'paused' } } });
    expect((await http.call('POST', `/workspaces/${ws}/pause`)).status).toBe(409);
    const r = await http.call('POST', `/workspaces/${ws}/resume`);
    expect(r.status).toBe(202);
    await waitReady(http, ws, { what: 'ready after resume' });
    expect((await ask('What is your name?')).body.result.parts[0].text).toMatch(/fly-worker/);
  });

  it('notices a killed agent, goes offline and restarts it', async () => {
    const victim = await pid();
    process.kill(victim, 'SIGKILL');
    await waitReady(http, ws, { what: 'offline then ready with a new pid', until: async () => (await pid()) !== victim });
    const evs = await events();
    const offline = evs.filter((e) => e.type === 'workspace.status' && e.data.to === 'offline').pop();
    expect(offline.data.reason).toMatch(/SIGKILL/);
    const restart = evs.filter((e) => e.type === 'workspace.status' && /automatic restart/.test(e.data.reason)).pop();
    expect(restart).toBeTruthy();
    expect((await get()).restart_count).toBeGreaterThanOrEqual(1);
  });

  it('keeps workspaces across a platform restart and adopts their agents', async () => {
    const agent = await pid();
    await platform.stop('SIGTERM');
    expect(pidAlive(agent)).toBe(true);
    platform = await launchPlatform({ dataDir, port: platform.port });
    http = api(platform.url);
    expect(await status()).toBe('ready');
    expect(await pid()).toBe(agent);
    const hb = (await get()).last_heartbeat_at;
    await waitFor('a heartbeat reaches the new platform', async () => (await get()).last_heartbeat_at !== hb);
    expect((await ask('What region are you running in?')).status).toBe(200);
    // The adopted agent is not our child: its death must still be seen.
    process.kill(agent, 'SIGKILL');
    await waitReady(http, ws, { what: 'adopted agent replaced', until: async () => (await pid()) !== agent, timeoutMs: 30_000 });
  }, 90_000);

  it('deletes: instance destroyed, tokens revoked, then 410', async () => {
    const agent = await pid();
    const token = processEnv(agent, 'MOLECULE_WORKSPACE_TOKEN')!;
    expect(token).toMatch(/^mws_/);
    const d = await http.call('DELETE', `/workspaces/${ws}`);
    expect(d.status).toBe(202);
    await waitFor('410 after delete', async () => (await http.call('GET', `/workspaces/${ws}`)).status === 410);
    const gone = await http.call('GET', `/workspaces/${ws}`);
    expect(gone.body).toMatchObject({ code: 'workspace_removed', workspace: { status: 'removed' } });
    expect(pidAlive(agent)).toBe(false);
    const hb = await http.call('POST', '/registry/heartbeat', { active_tasks: 0, current_task: null, error_rate: 0, uptime_s: 1 }, { authorization: `Bearer ${token}` });
    expect(hb.status).toBe(401);
    expect((await http.call('DELETE', `/workspaces/${ws}`)).status).toBe(410);
    expect((await http.call('POST', `/workspaces/${ws}/restart`)).status).toBe(410);
    const a2a = await ask('still there?');
    expect(a2a.status).toBe(200); // a JSON-RPC error: HTTP 200, the reason in error.data.code
    expect(a2a.body.error).toMatchObject({ code: -32035, data: { code: 'workspace_removed' } });
  });
});
