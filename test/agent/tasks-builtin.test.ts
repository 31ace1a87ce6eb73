import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { TaskState, type Task } from '@a2a-js/sdk';
import { ServerCallContext } from '@a2a-js/sdk/server';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startAgent, type AgentHandle } from '../../src/agent/agent.js';
import { PLATFORM_CALLER } from '../../src/agent/auth.js';
import { stateDirFromEnv } from '../../src/agent/config.js';
import { asksForInput } from '../../src/agent/executor.js';
import { WHICH_FACT_QUESTION } from '../../src/agent/responder.js';
import { BoundedTaskStore, RESTART_FAILURE_TEXT, TASKS_FILE } from '../../src/agent/task-store.js';
import { rpc, testConfig } from './support/agent.js';
import { captureLogs } from './support/logs.js';

const ctx = new ServerCallContext({ user: PLATFORM_CALLER });

function task(id: string, state: TaskState): Task {
  return {
    id,
    contextId: 'c1',
    status: { state, message: undefined, timestamp: new Date().toISOString() },
    artifacts: [],
    history: [],
    metadata: undefined,
  };
}

function tmpDir(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'molecule-tasks-'));
}

describe('the input-required rule', () => {
  it('counts a reply as a question when its last non-blank character is a question mark', () => {
    expect(asksForInput('Where would you like to go?')).toBe(true);
    expect(asksForInput('Which one? \n')).toBe(true);
    expect(asksForInput('Do you mean "Paris?"')).toBe(true);
    expect(asksForInput('**Which city?**')).toBe(true);
    expect(asksForInput('Is it? Yes, it is.')).toBe(false);
    expect(asksForInput('Done.')).toBe(false);
    expect(asksForInput('')).toBe(false);
  });
});

describe('file-backed task store', () => {
  it('writes atomically, reloads tasks with their owner scope, and fails tasks whose turn died with the process', async () => {
    const dir = tmpDir();
    const file = path.join(dir, TASKS_FILE);
    const store = await BoundedTaskStore.open(file);
    await store.save(task('done', TaskState.TASK_STATE_COMPLETED), ctx);
    await store.save(task('asking', TaskState.TASK_STATE_INPUT_REQUIRED), ctx);
    await store.save(task('running', TaskState.TASK_STATE_WORKING), ctx);
    expect(fs.readdirSync(dir)).toEqual([TASKS_FILE]);
    fs.writeFileSync(path.join(dir, `${TASKS_FILE}.999.tmp`), '{"half":');

    const logged: string[] = [];
    const reopened = await BoundedTaskStore.open(file, undefined, (msg) => logged.push(msg));
    expect(reopened.size).toBe(3);
    expect((await reopened.load('done', ctx))?.status?.state).toBe(TaskState.TASK_STATE_COMPLETED);
    expect((await reopened.load('asking', ctx))?.status?.state).toBe(TaskState.TASK_STATE_INPUT_REQUIRED);
    const running = await reopened.load('running', ctx);
    expect(running?.status?.state).toBe(TaskState.TASK_STATE_FAILED);
    expect(running?.status?.message?.parts[0]?.content).toEqual({ $case: 'text', value: RESTART_FAILURE_TEXT });
    expect(await reopened.load('done', new ServerCallContext({ user: { isAuthenticated: true, userName: 'other' } }))).toBeUndefined();
    expect(logged).toContain('loaded tasks from the state directory');
    expect(fs.readdirSync(dir)).toEqual([TASKS_FILE]);

    // A file from a larger limit is cut down to this store's, oldest finished first.
    const small = await BoundedTaskStore.open(file, 2);
    expect(small.size).toBe(2);
    expect(await small.load('done', ctx)).toBeUndefined();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('moves an unreadable file aside instead of refusing to start', async () => {
    const dir = tmpDir();
    const file = path.join(dir, TASKS_FILE);
    fs.writeFileSync(file, '{"version":1,"tasks":[');
    const store = await BoundedTaskStore.open(file);
    expect(store.size).toBe(0);
    expect(fs.readdirSync(dir).some((f) => f.startsWith(`${TASKS_FILE}.corrupt-`))).toBe(true);
    await store.save(task('new', TaskState.TASK_STATE_COMPLETED), ctx);
    expect((await BoundedTaskStore.open(file)).size).toBe(1);
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('chooses MOLECULE_STATE_DIR, else the /workspace volume, else a per-workspace directory under HOME', () => {
    const dir = tmpDir();
    expect(stateDirFromEnv({ MOLECULE_STATE_DIR: dir }, 'ws-1')).toBe(dir);
    expect(stateDirFromEnv({}, 'ws-1', dir)).toBe(path.join(dir, '.molecule'));
    expect(stateDirFromEnv({ HOME: dir }, 'ws/1', path.join(dir, 'missing'))).toBe(path.join(dir, '.molecule-agent', 'ws_1'));
    fs.rmSync(dir, { recursive: true, force: true });
  });
});

describe('tasks with the built-in responder (v0.3 JSON-RPC)', () => {
  let agent: AgentHandle;
  let stateDir: string;
  const logs = captureLogs();

  beforeAll(async () => {
    stateDir = tmpDir();
    agent = await startAgent(testConfig({ stateDir }), { logger: logs.logger });
  });
  afterAll(async () => {
    await agent?.close();
    fs.rmSync(stateDir, { recursive: true, force: true });
  });

  const message = (text: string, extra: Record<string, string> = {}) => ({
    kind: 'message',
    role: 'user',
    messageId: `b-${Math.random().toString(36).slice(2)}`,
    parts: [{ kind: 'text', text }],
    ...extra,
  });

  it('asks which fact when none is named (input-required), then answers on the same task', async () => {
    const sent = await rpc(agent.url, {
      jsonrpc: '2.0',
      id: 1,
      method: 'message/send',
      params: { message: message('Tell me a fact'), configuration: { blocking: false } },
    });
    const id = sent.json.result.id as string;
    let got: any;
    for (let i = 0; i < 100; i++) {
      got = (await rpc(agent.url, { jsonrpc: '2.0', id: 2, method: 'tasks/get', params: { id } })).json.result;
      if (got.status.state !== 'working' && got.status.state !== 'submitted') break;
      await new Promise((r) => setTimeout(r, 20));
    }
    expect(got.status.state).toBe('input-required');
    expect(got.status.message.parts[0].text).toBe(WHICH_FACT_QUESTION);

    const next = await rpc(agent.url, {
      jsonrpc: '2.0',
      id: 3,
      method: 'message/send',
      params: { message: message('your region', { taskId: id }) },
    });
    expect(next.json.result).toMatchObject({ kind: 'task', id, contextId: got.contextId, status: { state: 'completed' } });
    expect(next.json.result.status.message.parts[0].text).toBe("I'm running in region ord.");
    expect(next.json.result.artifacts.at(-1).parts[0].text).toBe("I'm running in region ord.");

    const file = JSON.parse(fs.readFileSync(path.join(stateDir, TASKS_FILE), 'utf8'));
    expect(file.tasks.map((t: any) => t.task.id)).toContain(id);
  });

  it('a blocking send without a taskId still answers with a Message, even when the reply is a question', async () => {
    const { json } = await rpc(agent.url, { jsonrpc: '2.0', id: 4, method: 'message/send', params: { message: message('a fact please') } });
    expect(json.result.kind).toBe('message');
    expect(json.result.parts[0].text).toBe(WHICH_FACT_QUESTION);
  });
});
