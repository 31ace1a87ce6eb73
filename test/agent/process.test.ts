import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import fs from 'node:fs';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { tempDir } from '../support/harness.js';
import { agentCommand } from '../../src/agent/launch.js';
import { agentEnv } from '../support/instance.js';
import { AGENT_TOKEN, legacySend, rpc, WORKSPACE_TOKEN } from './support/agent.js';
import { FakeOpenAI } from './support/fake-models.js';
import { FakePlatform } from './support/fake-platform.js';
import { gate } from './support/http.js';

interface Spawned {
  child: ChildProcess;
  lines: () => Array<Record<string, any>>;
  stdout: () => string;
  stderr: () => string;
  waitForLine: (predicate: (l: Record<string, any>) => boolean, timeoutMs?: number) => Promise<Record<string, any>>;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

// The agents keep their tasks in a state dir; these runs keep theirs here, not in the real HOME.
const home = tempDir('agent-process-home');
afterAll(() => fs.rmSync(home, { recursive: true, force: true }));

/** Runs the agent exactly as a backend would: agentCommand() plus the contract's env, with a clean environment. */
function spawnAgent(env: Record<string, string>): Spawned {
  const { command, args } = agentCommand();
  const child = spawn(command, args, {
    cwd: '/',
    env: { PATH: process.env.PATH ?? '', HOME: home, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  const listeners = new Set<() => void>();
  child.stdout!.on('data', (d: Buffer) => {
    out += d.toString();
    for (const l of listeners) l();
  });
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const lines = () =>
    out
      .split('\n')
      .filter((l) => l.trim())
      .map((l) => JSON.parse(l) as Record<string, any>);
  const exited = once(child, 'exit').then(([code, signal]) => ({ code: code as number | null, signal: signal as NodeJS.Signals | null }));
  const waitForLine = (predicate: (l: Record<string, any>) => boolean, timeoutMs = 20_000) =>
    new Promise<Record<string, any>>((resolve, reject) => {
      const check = () => {
        const found = lines().find(predicate);
        if (found) {
          cleanup();
          resolve(found);
        }
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(new Error(`timed out waiting for a log line; stdout:\n${out}\nstderr:\n${err}`));
      }, timeoutMs);
      const cleanup = () => {
        clearTimeout(timer);
        listeners.delete(check);
      };
      listeners.add(check);
      check();
    });
  return { child, lines, stdout: () => out, stderr: () => err, waitForLine, exited };
}

describe('agent as a child process (agentCommand)', () => {
  const cleanups: Array<() => Promise<void>> = [];
  afterEach(async () => {
    while (cleanups.length) await cleanups.pop()!();
  });

  function track(s: Spawned): Spawned {
    cleanups.push(async () => {
      if (s.child.exitCode === null && s.child.signalCode === null) {
        s.child.kill('SIGKILL');
        await s.exited;
      }
    });
    return s;
  }

  async function fakePlatform(): Promise<FakePlatform> {
    const platform = new FakePlatform();
    await platform.listen();
    cleanups.push(() => platform.close());
    return platform;
  }

  function contractEnv(platform: FakePlatform, extra: Record<string, string> = {}): Record<string, string> {
    return {
      ...agentEnv({
        workspaceId: 'ws-proc-1',
        workspaceName: 'proc-agent',
        workspaceRole: 'Process test agent',
        workspaceRuntime: 'hermes',
        workspaceTier: '1',
        platformUrl: platform.url,
        workspaceToken: WORKSPACE_TOKEN,
        agentToken: AGENT_TOKEN,
        port: '0',
        region: 'sjc',
        heartbeatIntervalS: '0.2',
      }),
      AGENT_HOST: '127.0.0.1',
      ...extra,
    };
  }

  it('registers, answers message/send, and exits 0 on SIGTERM', async () => {
    const platform = await fakePlatform();
    const agent = track(spawnAgent(contractEnv(platform)));
    const [register] = await platform.waitFor('register', 1, 30_000);
    const url = register!.body.url as string;
    expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect(register!.authorization).toBe(`Bearer ${WORKSPACE_TOKEN}`);

    const { json } = await rpc(url, {
      jsonrpc: '2.0',
      id: '1',
      method: 'message/send',
      params: { message: { role: 'user', parts: [{ kind: 'text', text: 'What region are you running in?' }] } },
    });
    expect(json.result.parts[0].text).toBe("I'm running in region sjc.");
    await platform.waitFor('heartbeat', 1);

    agent.child.kill('SIGTERM');
    const { code, signal } = await agent.exited;
    expect({ code, signal }).toEqual({ code: 0, signal: null });

    const lines = agent.lines();
    const msgs = lines.map((l) => l.msg);
    expect(msgs).toContain('agent listening');
    expect(msgs).toContain('registered with the platform');
    expect(msgs).toContain('a2a call');
    expect(msgs).toContain('shutdown requested');
    expect(msgs).toContain('agent stopped');
    const listening = lines.find((l) => l.msg === 'agent listening')!;
    expect(listening).toMatchObject({ region: 'sjc', provider: 'builtin', workspace_id: 'ws-proc-1' });
    expect(agent.stdout()).not.toContain(AGENT_TOKEN);
    expect(agent.stdout()).not.toContain(WORKSPACE_TOKEN);
  });

  it('on SIGTERM waits for a running turn to finish before exiting', async () => {
    const platform = await fakePlatform();
    const model = new FakeOpenAI();
    await model.listen();
    cleanups.push(() => model.close());
    const hold = gate();
    model.script = () => ({ text: 'finished after SIGTERM', hold: hold.promise, chunks: ['finished after SIGTERM'] });
    const agent = track(
      spawnAgent(contractEnv(platform, { OPENAI_API_KEY: 'sk-proc-test-1234', OPENAI_BASE_URL: `${model.url}/v1`, MODEL: 'fake' })),
    );
    const [register] = await platform.waitFor('register', 1, 30_000);
    const reply = rpc(register!.body.url as string, legacySend('slow one'));
    try {
      await model.waitForRequests(1);
      agent.child.kill('SIGTERM');
      await agent.waitForLine((l) => l.msg === 'shutting down' && l.active_tasks === 1);
      expect(agent.child.exitCode).toBeNull();
    } finally {
      hold.open();
    }
    expect((await reply).json.result.parts[0].text).toBe('finished after SIGTERM');
    expect((await agent.exited).code).toBe(0);
    expect(agent.stdout()).not.toContain('sk-proc-test-1234');
  });

  it('exits 0 by itself when the platform answers a heartbeat with 410', async () => {
    const platform = await fakePlatform();
    platform.heartbeatStatus = () => 410;
    const agent = track(spawnAgent(contractEnv(platform)));
    const { code } = await agent.exited;
    expect(code).toBe(0);
    expect(platform.heartbeats()).toHaveLength(1);
    expect(agent.lines().some((l) => l.msg === 'the platform says this workspace was removed; stopping')).toBe(true);
  });

  it('exits 1 naming the variable when MOLECULE_AGENT_TOKEN is missing', async () => {
    const agent = track(spawnAgent({ WORKSPACE_ID: 'ws-x', PORT: '0', AGENT_HOST: '127.0.0.1' }));
    const { code } = await agent.exited;
    expect(code).toBe(1);
    const fatal = agent.lines().find((l) => l.level === 60);
    expect(fatal?.msg).toContain('MOLECULE_AGENT_TOKEN');
    expect(fatal?.variable).toBe('MOLECULE_AGENT_TOKEN');
  });
});
