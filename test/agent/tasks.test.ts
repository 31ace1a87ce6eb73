import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Role, TaskState, type Message, type Task } from '@a2a-js/sdk';
import { ClientFactory, ClientFactoryOptions, JsonRpcTransportFactory, type Client } from '@a2a-js/sdk/client';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { agentCommand } from '../../src/agent/launch.js';
import { RESTART_FAILURE_TEXT, TASKS_FILE } from '../../src/agent/task-store.js';
import { agentEnv } from '../support/instance.js';
import { AGENT_TOKEN, rpc } from './support/agent.js';
import { FakeOpenAI } from './support/fake-models.js';
import { gate } from './support/http.js';

/**
 * A2A tasks against a real agent process (agentCommand(), the contract's env, a fake OpenAI-compatible model over
 * HTTP), driven by the official @a2a-js/sdk client on v1.0 and on v0.3 (the SDK's legacy transport):
 * non-blocking send then get, cancel, multi-turn by taskId with input-required, historyLength, and tasks that
 * outlive the process (SIGKILL by pid, restart with the same MOLECULE_STATE_DIR).
 *
 * The fake model answers by the last user text: "slow …" holds until the test opens the gate (so it can be
 * canceled), "plan a trip" asks a question (→ input-required), anything else is echoed back.
 */

const QUESTION = 'Where would you like to go?';

interface Agent {
  child: ChildProcess;
  url: string;
  out: () => string;
  exited: Promise<unknown>;
}

async function startProcess(env: Record<string, string>): Promise<Agent> {
  const { command, args } = agentCommand();
  const child = spawn(command, args, {
    cwd: '/',
    env: { PATH: process.env.PATH ?? '', HOME: os.tmpdir(), ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const exited = once(child, 'exit');
  const deadline = Date.now() + 30_000;
  for (;;) {
    const line = out
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as Record<string, any>)
      .find((l) => l.msg === 'agent listening');
    if (line) return { child, url: line.url as string, out: () => out, exited };
    if (child.exitCode !== null || Date.now() > deadline) throw new Error(`agent did not start:\n${out}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const authedFetch: typeof fetch = (input, init) => {
  const headers = new Headers(init?.headers);
  headers.set('authorization', `Bearer ${AGENT_TOKEN}`);
  return fetch(input, { ...init, headers });
};

/** The official client, bound to the card's interface for `version` ("1.0" or "0.3"). */
async function sdkClient(url: string, version: '1.0' | '0.3'): Promise<Client> {
  const factory = new ClientFactory(
    ClientFactoryOptions.createFrom(ClientFactoryOptions.default, {
      transports: [new JsonRpcTransportFactory({ fetchImpl: authedFetch, legacyCompat: { enabled: true } })],
    }),
  );
  if (version === '1.0') return factory.createFromUrl(url);
  const card = await (await fetch(`${url}/.well-known/agent-card.json`, { headers: { 'A2A-Version': '1.0' } })).json();
  card.supportedInterfaces = card.supportedInterfaces.filter((i: { protocolVersion: string }) => i.protocolVersion === '0.3');
  return factory.createFromAgentCard(card);
}

let seq = 0;
function userMessage(text: string, extra: { taskId?: string; contextId?: string } = {}): Message {
  return {
    messageId: `tasks-test-${++seq}`,
    contextId: extra.contextId ?? '',
    taskId: extra.taskId ?? '',
    role: Role.ROLE_USER,
    parts: [{ content: { $case: 'text', value: text }, mediaType: 'text/plain', filename: '', metadata: undefined }],
    metadata: undefined,
    extensions: [],
    referenceTaskIds: [],
  };
}

function send(client: Client, text: string, opts: { taskId?: string; contextId?: string; blocking?: boolean; historyLength?: number } = {}) {
  return client.sendMessage({
    tenant: '',
    message: userMessage(text, opts),
    configuration:
      opts.blocking === undefined && opts.historyLength === undefined
        ? undefined
        : {
            acceptedOutputModes: [],
            taskPushNotificationConfig: undefined,
            returnImmediately: opts.blocking === false,
            historyLength: opts.historyLength,
          },
    metadata: undefined,
  });
}

function asTask(result: Message | Task): Task {
  expect('status' in result, `expected a Task, got ${JSON.stringify(result)}`).toBe(true);
  return result as Task;
}

function text(message: Message | undefined): string {
  return (message?.parts ?? []).map((p) => (p.content?.$case === 'text' ? p.content.value : '')).join('');
}

function artifactText(task: Task): string {
  return task.artifacts.flatMap((a) => a.parts).map((p) => (p.content?.$case === 'text' ? p.content.value : '')).join('');
}

async function getUntil(client: Client, id: string, done: (t: Task) => boolean, timeoutMs = 10_000): Promise<Task> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const task = await client.getTask({ tenant: '', id });
    if (done(task)) return task;
    if (Date.now() > deadline) throw new Error(`task ${id} stuck in state ${task.status?.state}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

describe('A2A tasks on a real agent process (official SDK client)', () => {
  const model = new FakeOpenAI();
  let hold = gate();
  let stateDir: string;
  let agent: Agent;
  let env: Record<string, string>;

  beforeAll(async () => {
    await model.listen();
    model.script = (body) => {
      const last = String(body.messages.at(-1)?.content ?? '');
      if (last.startsWith('slow')) return { text: 'slow answer', chunks: ['slow ', 'answer'], hold: hold.promise };
      if (last.includes('plan a trip')) return { text: QUESTION };
      return { text: `echo: ${last}` };
    };
    stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'molecule-agent-state-'));
    env = {
      ...agentEnv({ workspaceId: 'ws-tasks-1', workspaceName: 'tasks', agentToken: AGENT_TOKEN, port: '0', region: 'ord', stateDir }),
      AGENT_HOST: '127.0.0.1',
      OPENAI_API_KEY: 'sk-tasks-test-4411',
      OPENAI_BASE_URL: `${model.url}/v1`,
      MODEL: 'fake',
    };
    agent = await startProcess(env);
  });
  afterEach(() => {
    hold.open();
    hold = gate();
  });
  afterAll(async () => {
    hold.open();
    if (agent && agent.child.exitCode === null && agent.child.signalCode === null) {
      agent.child.kill('SIGKILL');
      await agent.exited;
    }
    await model.close();
    fs.rmSync(stateDir, { recursive: true, force: true });
  });

  for (const version of ['1.0', '0.3'] as const) {
    describe(`v${version}`, () => {
      it('a blocking send still answers with a Message', async () => {
        const client = await sdkClient(agent.url, version);
        const result = await send(client, 'hello');
        expect('status' in result).toBe(false);
        expect(text(result as Message)).toBe('echo: hello');
      });

      it('a non-blocking send returns a Task at once; tasks/get follows it to completed with the reply in status.message and an artifact', async () => {
        const client = await sdkClient(agent.url, version);
        const task = asTask(await send(client, 'slow one', { blocking: false }));
        expect([TaskState.TASK_STATE_SUBMITTED, TaskState.TASK_STATE_WORKING]).toContain(task.status!.state);
        expect(task.id).not.toBe('');
        expect(task.contextId).not.toBe('');
        await model.waitForRequests(1);
        const running = await client.getTask({ tenant: '', id: task.id });
        expect(running.status!.state).toBe(TaskState.TASK_STATE_WORKING);

        hold.open();
        const done = await getUntil(client, task.id, (t) => t.status!.state === TaskState.TASK_STATE_COMPLETED);
        expect(text(done.status!.message)).toBe('slow answer');
        expect(done.status!.message!.role).toBe(Role.ROLE_AGENT);
        expect(artifactText(done)).toBe('slow answer');
        expect(done.contextId).toBe(task.contextId);
        expect(text(done.history[0])).toBe('slow one');
      });

      it('tasks/cancel cancels a working task and aborts the model call; a second cancel of a finished task is refused', async () => {
        const client = await sdkClient(agent.url, version);
        const before = model.requests.length;
        const task = asTask(await send(client, 'slow to cancel', { blocking: false }));
        await model.waitForRequests(before + 1);
        const canceled = await client.cancelTask({ tenant: '', id: task.id, metadata: undefined });
        expect(canceled.status!.state).toBe(TaskState.TASK_STATE_CANCELED);
        await model.waitForAbort();
        const got = await client.getTask({ tenant: '', id: task.id });
        expect(got.status!.state).toBe(TaskState.TASK_STATE_CANCELED);

        const finished = asTask(await send(client, 'quick', { blocking: false }));
        await getUntil(client, finished.id, (t) => t.status!.state === TaskState.TASK_STATE_COMPLETED);
        await expect(client.cancelTask({ tenant: '', id: finished.id, metadata: undefined })).rejects.toThrow(/cancel/i);
      });

      it('multi-turn: a question ends in input-required, a message with the taskId continues the same task and context', async () => {
        const client = await sdkClient(agent.url, version);
        const first = asTask(await send(client, 'please plan a trip', { blocking: false }));
        const asked = await getUntil(client, first.id, (t) => t.status!.state === TaskState.TASK_STATE_INPUT_REQUIRED);
        expect(text(asked.status!.message)).toBe(QUESTION);

        const before = model.requests.length;
        const answered = asTask(await send(client, 'Lisbon', { taskId: first.id }));
        expect(answered.id).toBe(first.id);
        expect(answered.contextId).toBe(first.contextId);
        expect(answered.status!.state).toBe(TaskState.TASK_STATE_COMPLETED);
        expect(text(answered.status!.message)).toBe('echo: Lisbon');
        // contextId threads the conversation: the model saw the earlier exchange of this context.
        const sent = model.requests[before]!.body.messages.map((m: { content: string }) => m.content);
        expect(sent).toEqual(expect.arrayContaining(['please plan a trip', QUESTION, 'Lisbon']));
        const texts = answered.history.map(text);
        expect(texts).toEqual(expect.arrayContaining(['please plan a trip', 'Lisbon']));

        // A completed task takes no more messages (-32004); an unknown taskId is TaskNotFound.
        await expect(send(client, 'more', { taskId: first.id })).rejects.toThrow(/terminal state/i);
        await expect(send(client, 'x', { taskId: 'no-such-task' })).rejects.toThrow(/not found/i);

        // A taskId with another context's id is refused, and leaves the task waiting for input.
        const other = asTask(await send(client, 'plan a trip again', { blocking: false }));
        await getUntil(client, other.id, (t) => t.status!.state === TaskState.TASK_STATE_INPUT_REQUIRED);
        await expect(send(client, 'Rome', { taskId: other.id, contextId: first.contextId })).rejects.toThrow(/contextId mismatch/i);
        expect((await client.getTask({ tenant: '', id: other.id })).status!.state).toBe(TaskState.TASK_STATE_INPUT_REQUIRED);
      });

      it('honours historyLength on tasks/get and on send', async () => {
        const client = await sdkClient(agent.url, version);
        const first = asTask(await send(client, 'plan a trip for two', { blocking: false }));
        await getUntil(client, first.id, (t) => t.status!.state === TaskState.TASK_STATE_INPUT_REQUIRED);
        const second = asTask(await send(client, 'Porto', { taskId: first.id, historyLength: 1 }));
        expect(second.history).toHaveLength(1);
        const full = await client.getTask({ tenant: '', id: first.id });
        expect(full.history.length).toBeGreaterThanOrEqual(2);
        const one = await client.getTask({ tenant: '', id: first.id, historyLength: 1 });
        expect(one.history).toHaveLength(1);
        expect(one.history[0]).toEqual(full.history.at(-1));
        const none = await client.getTask({ tenant: '', id: first.id, historyLength: 0 });
        expect(none.history).toEqual([]);
      });
    });
  }

  it('plain v0.3 JSON-RPC: blocking:false gives a Task, no `blocking` stays blocking, empty A2A-Version is 0.3, multi-turn error codes', async () => {
    const message = (text: string) => ({ kind: 'message', role: 'user', messageId: `raw-${++seq}`, parts: [{ kind: 'text', text }] });
    const nb = await rpc(agent.url, { jsonrpc: '2.0', id: 1, method: 'message/send', params: { message: message('raw'), configuration: { blocking: false } } });
    expect(nb.json.result).toMatchObject({ kind: 'task', status: { state: expect.stringMatching(/^(submitted|working)$/) } });
    const b = await rpc(agent.url, { jsonrpc: '2.0', id: 2, method: 'message/send', params: { message: message('raw2'), configuration: { historyLength: 3 } } });
    expect(b.json.result).toMatchObject({ kind: 'message', parts: [{ kind: 'text', text: 'echo: raw2' }] });
    const got = await rpc(agent.url, { jsonrpc: '2.0', id: 3, method: 'tasks/get', params: { id: nb.json.result.id, historyLength: 0 } });
    expect(got.json.result.id).toBe(nb.json.result.id);

    // An empty A2A-Version header is 0.3 too (a2a-protocol.md §1).
    const empty = await rpc(agent.url, { jsonrpc: '2.0', id: 4, method: 'message/send', params: { message: message('empty') } }, { headers: { 'A2A-Version': '' } });
    expect(empty.json.result).toMatchObject({ kind: 'message', parts: [{ kind: 'text', text: 'echo: empty' }] });

    // Multi-turn rules (§3) by their JSON-RPC codes: unknown taskId -32001, mismatched contextId refused, terminal -32004.
    const withTask = (taskId: string, extra: Record<string, string> = {}) => ({ ...message('again'), taskId, ...extra });
    const unknown = await rpc(agent.url, { jsonrpc: '2.0', id: 5, method: 'message/send', params: { message: withTask('no-such-task') } });
    expect(unknown.json.error.code).toBe(-32001);
    const asking = await rpc(agent.url, { jsonrpc: '2.0', id: 6, method: 'message/send', params: { message: message('plan a trip raw'), configuration: { blocking: false } } });
    const askingId = asking.json.result.id as string;
    for (let i = 0; i < 200; i++) {
      const t = await rpc(agent.url, { jsonrpc: '2.0', id: 7, method: 'tasks/get', params: { id: askingId } });
      if (t.json.result.status.state === 'input-required') break;
      await new Promise((r) => setTimeout(r, 20));
    }
    const mismatch = await rpc(agent.url, { jsonrpc: '2.0', id: 8, method: 'message/send', params: { message: withTask(askingId, { contextId: 'another-context' }) } });
    expect(mismatch.json.error).toBeDefined();
    expect(mismatch.json.result).toBeUndefined();
    const answered = await rpc(agent.url, { jsonrpc: '2.0', id: 9, method: 'message/send', params: { message: withTask(askingId) } });
    expect(answered.json.result).toMatchObject({ kind: 'task', id: askingId, contextId: asking.json.result.contextId, status: { state: 'completed' } });
    const terminal = await rpc(agent.url, { jsonrpc: '2.0', id: 10, method: 'message/send', params: { message: withTask(askingId) } });
    expect(terminal.json.error.code).toBe(-32004);

    // The SDK clients above went through both method grammars (the agent logs each call's method and version).
    const calls = agent
      .out()
      .split('\n')
      .filter((l) => l.includes('"a2a call"'))
      .map((l) => JSON.parse(l) as { method: string; a2a_version: string });
    const seen = new Set(calls.map((c) => `${c.method}@${c.a2a_version}`));
    for (const m of ['SendMessage@1.0', 'GetTask@1.0', 'CancelTask@1.0', 'message/send@0.3', 'tasks/get@0.3', 'tasks/cancel@0.3']) {
      expect(seen).toContain(m);
    }
  });

  it('an agent killed mid-conversation still answers tasks/get for earlier tasks after a restart with the same state dir', async () => {
    const client = await sdkClient(agent.url, '1.0');
    const done = asTask(await send(client, 'remember me', { blocking: false }));
    const completed = await getUntil(client, done.id, (t) => t.status!.state === TaskState.TASK_STATE_COMPLETED);
    const open = asTask(await send(client, 'plan a trip please', { blocking: false }));
    await getUntil(client, open.id, (t) => t.status!.state === TaskState.TASK_STATE_INPUT_REQUIRED);
    const before = model.requests.length;
    const running = asTask(await send(client, 'slow and interrupted', { blocking: false }));
    await model.waitForRequests(before + 1);
    expect(fs.existsSync(path.join(stateDir, TASKS_FILE))).toBe(true);

    // Stop the process by its pid, without a chance to clean up, and start it again on the same state dir.
    process.kill(agent.child.pid!, 'SIGKILL');
    await agent.exited;
    agent = await startProcess(env);
    const after = await sdkClient(agent.url, '1.0');

    const again = await after.getTask({ tenant: '', id: done.id });
    expect(again.status!.state).toBe(TaskState.TASK_STATE_COMPLETED);
    expect(text(again.status!.message)).toBe('echo: remember me');
    expect(artifactText(again)).toBe(artifactText(completed));
    expect(again.history).toEqual(completed.history);

    const interrupted = await after.getTask({ tenant: '', id: running.id });
    expect(interrupted.status!.state).toBe(TaskState.TASK_STATE_FAILED);
    expect(text(interrupted.status!.message)).toBe(RESTART_FAILURE_TEXT);

    // The input-required task continues across the restart.
    const resumed = asTask(await send(after, 'Madrid', { taskId: open.id }));
    expect(resumed.status!.state).toBe(TaskState.TASK_STATE_COMPLETED);
    expect(text(resumed.status!.message)).toBe('echo: Madrid');
    const legacy = await rpc(agent.url, { jsonrpc: '2.0', id: 'r', method: 'tasks/get', params: { id: done.id } });
    expect(legacy.json.result).toMatchObject({ kind: 'task', id: done.id, status: { state: 'completed' } });
  });

  it('an input-required task can be canceled (no turn running)', async () => {
    const client = await sdkClient(agent.url, '1.0');
    const t = asTask(await send(client, 'plan a trip to cancel', { blocking: false }));
    await getUntil(client, t.id, (x) => x.status!.state === TaskState.TASK_STATE_INPUT_REQUIRED);
    const canceled = await client.cancelTask({ tenant: '', id: t.id, metadata: undefined });
    expect(canceled.status!.state).toBe(TaskState.TASK_STATE_CANCELED);
    const got = await client.getTask({ tenant: '', id: t.id });
    expect(got).toMatchObject({ id: t.id, contextId: t.contextId, status: { state: TaskState.TASK_STATE_CANCELED } });
  });
});
