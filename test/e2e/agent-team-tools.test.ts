import fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { api, killRecordedAgents, launchPlatform, tempDir, waitFor, waitReady, type Api, type PlatformProcess } from '../support/harness.js';
import { FakeOpenAI } from '../agent/support/fake-models.js';

const toolResults = (body: any): string[] => body.messages.filter((m: any) => m.role === 'tool').map((m: any) => String(m.content));

/**
 * The model's team tools against a real platform (process backend):
 *
 *   lead (model) ── helper (built-in responder) ── junior (model)
 *
 * lead lists its team, asks its child helper a question through the platform's A2A proxy and answers with the
 * reply; junior tries to reach lead, its grandparent, and the refusal comes back to its model as a tool result.
 */
describe('team tools: list_my_team and send_message_to_agent through the platform', () => {
  const dataDir = tempDir('team-tools');
  const leadModel = new FakeOpenAI();
  const juniorModel = new FakeOpenAI();
  let platform: PlatformProcess;
  let h: Api;
  const ids: Record<string, string> = {};

  const send = (id: string, text: string) =>
    h.call('POST', `/workspaces/${id}/a2a`, {
      jsonrpc: '2.0',
      id: 1,
      method: 'message/send',
      params: { message: { kind: 'message', role: 'user', messageId: crypto.randomUUID(), parts: [{ kind: 'text', text }] } },
    });
  const answerText = (r: { body: any }) => (r.body?.result?.parts ?? r.body?.result?.status?.message?.parts ?? []).map((p: any) => p.text ?? '').join('');

  beforeAll(async () => {
    await Promise.all([leadModel.listen(), juniorModel.listen()]);
    platform = await launchPlatform({ dataDir });
    h = api(platform.url);
    const create = async (name: string, extra: Record<string, unknown> = {}) => {
      const r = await h.call('POST', '/workspaces', { name, role: `the ${name} agent`, ...extra });
      expect(r.status, r.text).toBe(201);
      return r.body.id as string;
    };
    const model = (m: FakeOpenAI) => ({ env: { OPENAI_BASE_URL: `${m.url}/v1`, MODEL: 'fake-team' }, secrets: { OPENAI_API_KEY: 'sk-team-test' } });
    ids.lead = await create('lead', model(leadModel));
    ids.helper = await create('helper', { parent_id: ids.lead });
    ids.junior = await create('junior', { parent_id: ids.helper, ...model(juniorModel) });
    await Promise.all(Object.values(ids).map((id) => waitReady(h, id)));
  }, 90_000);

  afterAll(async () => {
    await platform?.stop();
    killRecordedAgents(dataDir);
    await Promise.all([leadModel.close(), juniorModel.close()]);
    fs.rmSync(dataDir, { recursive: true, force: true });
  });

  it('lists the team, asks the child, and answers with its reply', async () => {
    const question = 'What region are you running in?';
    leadModel.script = (body) => {
      const results = toolResults(body);
      if (results.length === 0) return { toolCall: { id: 'call_team', name: 'list_my_team' } };
      if (results.length === 1) {
        const child = JSON.parse(results[0]!).agents.find((a: any) => a.relation === 'child');
        return { toolCall: { id: 'call_ask', name: 'send_message_to_agent', input: { workspace_id: child?.workspace_id ?? 'none', text: question } } };
      }
      return { text: `My helper says: ${JSON.parse(results[1]!).reply ?? results[1]}` };
    };
    const r = await send(ids.lead!, 'Ask your helper where it runs.');
    expect(r.status).toBe(200);
    expect(r.body.error, JSON.stringify(r.body)).toBeUndefined();
    expect(answerText(r)).toContain('local');
    expect(answerText(r)).toMatch(/^My helper says: .*region local/);

    // The first tool result: the team as lead sees it, with relations.
    expect(leadModel.requests).toHaveLength(3);
    expect(leadModel.requests[0]!.body.tools.map((t: any) => t.function.name)).toEqual(expect.arrayContaining(['list_my_team', 'send_message_to_agent']));
    const team = JSON.parse(toolResults(leadModel.requests[1]!.body)[0]!).agents;
    const byName = Object.fromEntries(team.map((a: any) => [a.name, a]));
    expect(byName.lead).toMatchObject({ workspace_id: ids.lead, relation: 'self', status: 'ready' });
    expect(byName.helper).toMatchObject({ workspace_id: ids.helper, relation: 'child', status: 'ready', description: 'the helper agent' });
    expect(byName.helper.skills.length).toBeGreaterThan(0);
    expect(byName.junior).toBeUndefined(); // a grandchild is outside lead's family
    const reply = JSON.parse(toolResults(leadModel.requests[2]!.body)[1]!);
    expect(reply).toMatchObject({ workspace_id: ids.helper, reply: expect.stringContaining('local') });

    // The helper's agent really took the call: its log has the A2A request.
    await waitFor('the helper logged the A2A call', async () => {
      const logs = await h.call('GET', `/workspaces/${ids.helper}/logs?tail=500`);
      return /"msg":"a2a call"/.test(logs.text) && /SendMessage|message\/send/.test(logs.text);
    }, 10_000);
  });

  it('hands a refusal outside the family back to the model as an a2a_forbidden error', async () => {
    juniorModel.script = (body) => {
      const results = toolResults(body);
      if (results.length === 0) return { toolCall: { id: 'call_up', name: 'send_message_to_agent', input: { workspace_id: ids.lead, text: 'Hello grandparent' } } };
      return { text: `Tool said: ${results[0]}` };
    };
    const before = leadModel.requests.length;
    const r = await send(ids.junior!, 'Say hello to lead.');
    expect(r.body.error, JSON.stringify(r.body)).toBeUndefined();
    const result = JSON.parse(toolResults(juniorModel.requests[1]!.body)[0]!);
    expect(result).toMatchObject({ code: 'a2a_forbidden', workspace_id: ids.lead });
    expect(answerText(r)).toContain('a2a_forbidden');
    expect(leadModel.requests.length).toBe(before); // lead's model never heard of it
  });

  it('refuses to message its own workspace, by id or by name', async () => {
    juniorModel.requests.length = 0;
    juniorModel.script = (body) => {
      const results = toolResults(body);
      if (results.length === 0) return { toolCall: { id: 'call_self', name: 'send_message_to_agent', input: { agent: 'junior', text: 'loop?' } } };
      return { text: `Tool said: ${results[0]}` };
    };
    const r = await send(ids.junior!, 'Talk to yourself.');
    expect(answerText(r)).toContain('self_message');
    expect(juniorModel.requests).toHaveLength(2);
  });
});
