import net from 'node:net';
import { describe, expect, it } from 'vitest';
import { agentUrlProblem } from '../../src/core/agent-url.js';
import { waitFor, waitReady } from '../support/harness.js';
import type { Logger } from 'pino';
import { ProcessProvisioner } from '../../src/backends/process/index.js';
import type { InstanceHandle, InstanceSpec, Provisioner } from '../../src/core/provisioner.js';
import { a2aMessage, ADMIN, agentTokens, createReady, securityPlatforms } from './support.js';

const start = securityPlatforms();

type Instance = Parameters<typeof agentUrlProblem>[1];

/** The handles the backends return (shapes as recorded on the workspace). */
const process_: Instance = { instanceId: 'proc-1', handle: { url: 'http://127.0.0.1:41234', details: { pid: 10, port: 41234 } } };
const fly: Instance = {
  instanceId: '3d8d9e1a5b6c78',
  handle: {
    url: 'https://my-app.fly.dev',
    headers: { 'fly-force-instance-id': '3d8d9e1a5b6c78' },
    details: { machine_id: '3d8d9e1a5b6c78', name: 'ws-0123456789ab', region: 'ord', private_ip: 'fdaa:0:7f0f:a7b:9e3f:68ba:63b9:2', app: 'my-app' },
  },
};
const docker: Instance = {
  instanceId: 'ws-0123456789ab',
  handle: { url: 'http://127.0.0.1:49153', details: { container_id: 'f00dbeef', hostname: 'ws-0123456789ab', ip: '172.17.0.5', port: 49153 } },
};

describe('rule 6: the URL an agent registers must be one its backend vouches for', () => {
  it('accepts the instance’s own addresses, whatever the backend', () => {
    expect(agentUrlProblem('http://127.0.0.1:41234', process_, [])).toBeNull();
    expect(agentUrlProblem('http://127.0.0.1:41234/', process_, [])).toBeNull();
    expect(agentUrlProblem('http://[fdaa:0:7f0f:a7b:9e3f:68ba:63b9:2]:8000', fly, [])).toBeNull();
    expect(agentUrlProblem('http://[FDAA:0:7F0F:A7B:9E3F:68BA:63B9:0002]:8000', fly, [])).toBeNull();
    expect(agentUrlProblem('http://ws-0123456789ab:8000', docker, [])).toBeNull();
    expect(agentUrlProblem('http://172.17.0.5:8000', docker, [])).toBeNull();
  });

  it('refuses anything else: another port on a shared address, other hosts, metadata endpoints, odd schemes, credentials', () => {
    const refused: [string, Instance][] = [
      ['http://127.0.0.1:8080', process_], // the platform itself
      ['http://127.0.0.1:5432', process_],
      ['http://localhost:41234', process_],
      ['http://169.254.169.254/latest/meta-data/', process_],
      ['http://[fdaa:0:7f0f:a7b:9e3f:68ba:63b9:3]:8000', fly],
      ['https://my-app.fly.dev:8443', fly],
      ['http://my-app:8000', fly], // the app name is not an address of this machine
      ['http://ord:8000', fly],
      ['http://127.0.0.1:8000', docker],
      ['http://172.17.0.6:8000', docker],
      ['file:///etc/passwd', process_],
      ['gopher://127.0.0.1:41234', process_],
      ['http://user:pw@127.0.0.1:41234', process_],
      ['not a url', process_],
      ['', process_],
    ];
    for (const [url, inst] of refused) expect(agentUrlProblem(url, inst, []), url).toEqual(expect.any(String));
    expect(agentUrlProblem('http://127.0.0.1:41234', { instanceId: null, handle: null }, [])).toMatch(/no instance/);
  });

  it('accepts URLs under MOLECULE_EXTERNAL_AGENT_URLS for agents outside a backend', () => {
    const allow = ['https://agents.example.com/team-a', 'http://10.0.0.7:9000'];
    expect(agentUrlProblem('https://agents.example.com/team-a', process_, allow)).toBeNull();
    expect(agentUrlProblem('https://agents.example.com/team-a/x', process_, allow)).toBeNull();
    expect(agentUrlProblem('http://10.0.0.7:9000/', process_, allow)).toBeNull();
    expect(agentUrlProblem('https://agents.example.com/team-ab', process_, allow)).toEqual(expect.any(String));
    expect(agentUrlProblem('http://10.0.0.7:9001', process_, allow)).toEqual(expect.any(String));
  });

  it('answers a spoofed URL with 403 agent_url_mismatch, changes nothing, and never connects to it', async () => {
    // A listener standing in for an internal service the spoofed URL points at: it must see no connection.
    let connections = 0;
    const bait = net.createServer((c) => {
      connections++;
      c.destroy();
    });
    await new Promise<void>((r) => bait.listen(0, '127.0.0.1', r));
    const baitUrl = `http://127.0.0.1:${(bait.address() as net.AddressInfo).port}`;
    try {
      const s = await start({ MOLECULE_ADMIN_TOKEN: ADMIN, MOLECULE_EXTERNAL_AGENT_URLS: 'https://agents.example.com' });
      const ws = await createReady(s.admin, { name: 'honest' });
      const asAgent = s.as(agentTokens(ws).workspace);
      for (const url of [baitUrl, 'http://169.254.169.254/', `${s.p.url}/`]) {
        const r = await asAgent.call('POST', '/registry/register', { url, agent_card: { name: 'spoofed' } });
        expect(r.status).toBe(403);
        expect(r.body).toMatchObject({ code: 'agent_url_mismatch', error: expect.stringContaining('MOLECULE_EXTERNAL_AGENT_URLS') });
      }
      const after = (await s.admin.call('GET', `/workspaces/${ws.id}`)).body;
      expect(after.agent).toEqual(ws.agent);
      expect(after.status).toBe('ready');
      expect(s.log()).toContain('registration refused: agent url');

      // The agent's real URL is accepted again; an allow-listed one is recorded, yet calls still go to the instance.
      expect((await asAgent.call('POST', '/registry/register', { url: ws.instance.url, agent_card: { name: 'honest' } })).status).toBe(200);
      expect((await asAgent.call('POST', '/registry/register', { url: 'https://agents.example.com/x', agent_card: { name: 'honest' } })).status).toBe(200);
      expect((await s.admin.call('GET', `/workspaces/${ws.id}`)).body.agent.url).toBe('https://agents.example.com/x');
      const reply = await s.admin.call('POST', `/workspaces/${ws.id}/a2a`, a2aMessage('What is your name?'));
      expect(reply.body.result.parts[0].text).toContain('honest');
      await new Promise((r) => setTimeout(r, 300));
      expect(connections).toBe(0);
    } finally {
      bait.close();
    }
  });

  it('lets a real agent register even when it is faster than the backend’s answer (register waits for the instance)', async () => {
    // The backend reports the instance only well after the agent has booted and tried to register.
    const slowToAnswer = (dataDir: string, logger: Logger) => {
      const inner = new ProcessProvisioner({ dataDir, logger });
      const late = async (h: Promise<InstanceHandle>) => {
        const handle = await h;
        await waitFor('agent up', async () => (await fetch(new URL('/healthz', handle.url!)).catch(() => null))?.ok);
        await new Promise((r) => setTimeout(r, 1000));
        return handle;
      };
      return Object.assign(Object.create(inner), {
        start: (spec: InstanceSpec) => late(inner.start(spec)),
        restart: (id: string | null, spec: InstanceSpec) => late(inner.restart(id, spec)),
      }) as Provisioner;
    };
    const s = await start({ MOLECULE_ADMIN_TOKEN: ADMIN }, { provisioner: slowToAnswer });
    const ws = await createReady(s.admin, { name: 'quick' });
    expect(ws.agent.url).toBe(ws.instance.url);
    expect((await s.admin.call('POST', `/workspaces/${ws.id}/restart`)).status).toBe(202);
    const again = await waitReady(s.admin, ws.id, { until: (w) => w.ready_at > ws.ready_at });
    expect(again.agent.url).toBe(again.instance.url);
    // The first registration attempts waited instead of being refused against a missing or previous instance.
    expect(s.log()).not.toContain('registration refused');
  });
});
