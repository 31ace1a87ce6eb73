import { spawn, type ChildProcess } from 'node:child_process';
import crypto from 'node:crypto';
import { once } from 'node:events';
import fs from 'node:fs';
import path from 'node:path';
import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { instanceName } from '../../src/backends/naming.js';
import { ProcessProvisioner } from '../../src/backends/process/index.js';
import { agentPids, killPids, processRunning } from '../support/agents.js';
import { freePort, killRecordedAgents, pidAlive, ROOT, tempDir, waitFor } from '../support/harness.js';
import { crashWindowSpec } from './support.js';

const FIXTURES = path.join(import.meta.dirname, 'fixtures');
const logger = pino({ level: 'silent' });

/** Runs a fixture script under tsx as its own process (optionally as another user), collecting its stdout. */
function runFixture(script: string, args: string[], opts: { env?: Record<string, string>; imports?: string[]; uid?: number; gid?: number } = {}) {
  const child = spawn(process.execPath, [...(opts.imports ?? []).flatMap((i) => ['--import', i]), '--import', 'tsx', path.join(FIXTURES, script), ...args], {
    cwd: ROOT,
    env: { PATH: process.env.PATH, HOME: opts.uid === undefined ? process.env.HOME : '/tmp', ...opts.env },
    stdio: ['ignore', 'pipe', 'pipe'],
    uid: opts.uid,
    gid: opts.gid,
  });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = once(child, 'exit');
  return { child, exited, stdout: () => stdout, stderr: () => stderr };
}

describe('process backend: agents it lost track of', () => {
  const cleanups: Array<() => Promise<void> | void> = [];
  afterEach(async () => {
    while (cleanups.length) await cleanups.pop()!();
  });

  /**
   * A "platform" (fixture script) starts an agent and is killed -9 between the agent's spawn and its pid record,
   * the window the hook freezes it in. Returns the agent it left behind, found by its WORKSPACE_ID.
   */
  async function crashBetweenSpawnAndRecord(dataDir: string, workspaceId: string, platformUrl: string): Promise<number> {
    const signalFile = path.join(dataDir, 'frozen');
    const run = runFixture('start-agent.ts', [dataDir, workspaceId, platformUrl], {
      imports: [path.join(FIXTURES, 'freeze-before-pid-record.mjs')],
      env: { MOLECULE_TEST_FREEZE_SIGNAL: signalFile },
    });
    cleanups.push(() => killPids(agentPids([workspaceId])));
    cleanups.push(async () => {
      if (run.child.exitCode === null && run.child.signalCode === null) {
        run.child.kill('SIGKILL');
        await run.exited;
      }
    });
    await Promise.race([
      waitFor('the starter to freeze before writing the pid record', async () => fs.existsSync(signalFile), 30_000),
      run.exited.then(() => Promise.reject(new Error(`the starter exited before freezing:\n${run.stdout()}\n${run.stderr()}`))),
    ]);
    run.child.kill('SIGKILL');
    await run.exited;
    // The crash window for real: the agent runs, nothing records it.
    expect(fs.existsSync(path.join(dataDir, 'process', `${instanceName(workspaceId)}.json`))).toBe(false);
    const left = agentPids([workspaceId]);
    expect(left).toHaveLength(1);
    return left[0]!;
  }

  async function setUp() {
    const dataDir = tempDir('process-lost');
    const workspaceId = crypto.randomUUID();
    const platformUrl = `http://127.0.0.1:${await freePort()}`; // nobody answers: the agent keeps retrying to register
    const provisioner = new ProcessProvisioner({ dataDir, logger, stopGraceMs: 2000 });
    cleanups.push(async () => {
      await provisioner.close();
      killRecordedAgents(dataDir);
      fs.rmSync(dataDir, { recursive: true, force: true });
    });
    return { dataDir, workspaceId, platformUrl, provisioner };
  }

  it('lists an agent whose pid record was never written (killed -9 between spawn and record), and destroys it', async () => {
    const { dataDir, workspaceId, platformUrl, provisioner } = await setUp();
    const orphan = await crashBetweenSpawnAndRecord(dataDir, workspaceId, platformUrl);
    const instanceId = instanceName(workspaceId);

    // A new platform on the same data dir: the reconciler's orphan sweep destroys what list() reports and no
    // workspace claims, so list() must report this agent.
    expect(await provisioner.list()).toContainEqual({ instanceId, workspaceId, state: 'running' });
    await provisioner.destroy(instanceId);
    expect(processRunning(orphan)).toBe(false);
    expect(agentPids([workspaceId])).toEqual([]);
    expect((await provisioner.list()).map((o) => o.instanceId)).not.toContain(instanceId);
  }, 60_000);

  it('a new start of that workspace replaces the lost agent rather than running a second one beside it', async () => {
    const { dataDir, workspaceId, platformUrl, provisioner } = await setUp();
    const orphan = await crashBetweenSpawnAndRecord(dataDir, workspaceId, platformUrl);

    const handle = await provisioner.start(crashWindowSpec(workspaceId, platformUrl, '_2'));
    expect(processRunning(orphan)).toBe(false);
    expect(agentPids([workspaceId])).toEqual([handle.details.pid]);
    await provisioner.destroy(handle.instanceId);
    expect(agentPids([workspaceId])).toEqual([]);
  }, 60_000);

  it('a start that cannot write the pid record fails without leaving its agent running', async () => {
    const { dataDir, workspaceId, platformUrl, provisioner } = await setUp();
    cleanups.push(() => killPids(agentPids([workspaceId])));
    // The record is written to <record>.tmp, then renamed: a directory in its way fails the write (as a full disk would).
    fs.mkdirSync(path.join(dataDir, 'process', `${instanceName(workspaceId)}.json.tmp`));
    await expect(provisioner.start(crashWindowSpec(workspaceId, platformUrl, '_2'))).rejects.toMatchObject({ code: 'START_FAILED' });
    await waitFor('the unrecorded agent to be gone', async () => agentPids([workspaceId]).length === 0, 5000);
  }, 60_000);
});

describe('process backend: a pid it may not signal', () => {
  const cleanups: Array<() => Promise<void> | void> = [];
  afterEach(async () => {
    while (cleanups.length) await cleanups.pop()!();
  });

  /**
   * kill(pid, 0) fails with EPERM for another user's process. Our agents run as our user, so such a pid in a
   * record (reused after the agent died) is not our agent: inspect() must not call it running, and stop() must not
   * wait for it to die. As root (CI) EPERM only happens to another user, so the backend runs as `nobody` here and
   * the recorded pid is a root-owned process; as any other user, pid 1 is not ours.
   */
  it('treats an EPERM pid as not its agent: inspect() does not report it running and stop() returns', async () => {
    const asRoot = process.getuid?.() === 0;
    const dataDir = tempDir('process-eperm');
    cleanups.push(() => fs.rmSync(dataDir, { recursive: true, force: true }));
    const workspaceId = crypto.randomUUID();
    const instanceId = instanceName(workspaceId);

    let foreignPid: number;
    if (asRoot) {
      // Root's process, carrying the workspace's id: even its environment looks like the agent's.
      const sleeper = spawn('sleep', ['60'], { env: { PATH: process.env.PATH, WORKSPACE_ID: workspaceId }, stdio: 'ignore' });
      const exited = once(sleeper, 'exit');
      cleanups.push(async () => {
        if (sleeper.exitCode === null && sleeper.signalCode === null) {
          sleeper.kill('SIGKILL');
          await exited;
        }
      });
      await once(sleeper, 'spawn');
      foreignPid = sleeper.pid!;
    } else {
      foreignPid = 1;
      try {
        process.kill(1, 0);
        return void console.warn('skipped: pid 1 is ours here, so no pid answers EPERM');
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EPERM') throw e;
      }
    }

    // The record a platform left: the agent's pid, now belonging to someone else.
    new ProcessProvisioner({ dataDir, logger, cgroups: 'off' }); // lays out the data dir
    fs.writeFileSync(
      path.join(dataDir, 'process', `${instanceId}.json`),
      JSON.stringify({ instanceId, workspaceId, pid: foreignPid, port: 1, startedAt: new Date().toISOString() }),
    );
    if (asRoot) {
      for (const p of [dataDir, path.join(dataDir, 'process'), path.join(dataDir, 'logs')]) fs.chmodSync(p, 0o777);
      fs.chmodSync(path.join(dataDir, 'process', `${instanceId}.json`), 0o666);
    }

    const run = runFixture('inspect-and-stop.ts', [dataDir, instanceId], asRoot ? { uid: 65534, gid: 65534 } : {});
    cleanups.push(async () => {
      if (run.child.exitCode === null && run.child.signalCode === null) {
        run.child.kill('SIGKILL');
        await run.exited;
      }
    });
    const [code] = await run.exited;
    expect(code, run.stderr()).toBe(0);
    const out = JSON.parse(run.stdout().trim());
    // Before: inspect() said 'running' and stop() was still waiting for the pid to die after 10 s.
    expect({ signal0: out.signal0, reportedRunning: out.inspect.state === 'running', stop: out.stop }).toEqual({
      signal0: 'EPERM',
      reportedRunning: false,
      stop: 'returned',
    });
    expect(pidAlive(foreignPid)).toBe(true); // not ours: untouched
  }, 60_000);
});
