/**
 * Light agents (`light: true`, `npm run fly-sim -- --light`): a machine's agent runs inside the simulator as an
 * EmbeddedAgent (src/agent/embedded.ts — the real agent's config, responder, card, JSON-RPC handling,
 * registration and heartbeats) instead of as a child process. LightProcess gives it a process's face for the
 * engine: signals, stop with SIGKILL escalation, suspend/resume, an exit code; the proxy dispatches requests to it
 * in memory.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { ConfigError, loadConfig } from '../../src/agent/config.js';
import { EmbeddedAgent, EmbeddedAgentHost } from '../../src/agent/embedded.js';
import { createLineLogger } from '../../src/agent/logger.js';
import type { ExitInfo, MainProcess } from './runner.js';
import { signalNumber, type Clock } from './util.js';

export { EmbeddedAgentHost };

/** Signals a Node process ignores by default (SIGUSR1 opens the inspector; nothing the agent would die of). */
/** Shared: a light agent is "spawned" the moment it exists. */
const SPAWNED = Promise.resolve(true);
const IGNORED: ReadonlySet<string> = new Set(['SIGUSR1', 'SIGWINCH', 'SIGPIPE', 'SIGCHLD', 'SIGURG']);

export class LightProcess implements MainProcess {
  readonly pid = undefined;
  readonly exited: Promise<ExitInfo>;
  readonly spawned = SPAWNED;
  spawnError: Error | null = null;
  exitInfo: ExitInfo | null = null;
  requestedStop = false;
  suspended = false;
  readonly agent: EmbeddedAgent | undefined;
  private resolveExit!: (info: ExitInfo) => void;

  /** Boots the agent from the machine's environment, exactly what src/agent/main.ts reads from process.env. */
  constructor(
    host: EmbeddedAgentHost,
    env: Record<string, string>,
    private readonly clock: Clock,
    onLine: (stream: 'stdout' | 'stderr', line: string) => void,
  ) {
    this.exited = new Promise((resolve) => (this.resolveExit = resolve));
    const sink = (line: string) => onLine('stdout', line);
    let config;
    try {
      config = loadConfig(env);
    } catch (err) {
      if (!(err instanceof ConfigError)) throw err;
      // As main.ts: a fatal line, exit code 1 (after the caller has seen the process start).
      createLineLogger('info', sink).fatal({ variable: err.variable }, `cannot start: ${err.message}`);
      setImmediate(() => this.finish(1, null));
      return;
    }
    const logger = createLineLogger(config.logLevel, sink, { service: 'molecule-agent', workspace_id: config.workspace.id });
    const agent = new EmbeddedAgent(host, config, { logger });
    this.agent = agent;
    agent.start();
    void agent.removed.then(() => this.shutdown('workspace removed (heartbeat answered 410)'));
  }

  get alive(): boolean {
    return this.exitInfo === null;
  }

  /** Answers a request the proxy forwards to the machine's internal port. */
  dispatch(req: IncomingMessage, res: ServerResponse): void {
    if (!this.agent || !this.alive) {
      res.destroy();
      return;
    }
    this.agent.dispatch(req, res);
  }

  /** A request answered in memory, for config.checks. */
  async probe(method: 'GET' | 'HEAD' | 'POST', path: string): Promise<{ status: number; body: string }> {
    if (!this.agent || !this.alive) throw new Error('connection refused');
    return this.agent.probe(method, path);
  }

  /** What the agent process does on each signal: SIGTERM/SIGINT graceful, SIGSTOP/SIGCONT freeze, others fatal. */
  signal(sig: NodeJS.Signals): void {
    if (!this.alive) return;
    if (sig === 'SIGSTOP' || sig === 'SIGTSTP') {
      this.suspended = true;
      this.agent?.suspend();
    } else if (sig === 'SIGCONT') {
      this.suspended = false;
      this.agent?.resume();
    } else if (sig === 'SIGTERM' || sig === 'SIGINT') {
      if (this.suspended) return; // a stopped process handles it once continued (stop() continues it)
      void this.shutdown(sig);
    } else if (!IGNORED.has(sig)) {
      this.agent?.kill();
      this.finish(128 + signalNumber(sig), sig);
    }
  }

  async stop(signal: NodeJS.Signals, timeoutMs: number): Promise<ExitInfo> {
    this.requestedStop = true;
    if (!this.alive) return this.exited;
    if (signal === 'SIGKILL' || timeoutMs <= 0) return this.kill();
    if (this.suspended) this.resume();
    this.signal(signal);
    const timer = this.clock.setTimeout(() => this.signal('SIGKILL'), timeoutMs);
    const info = await this.exited;
    this.clock.clearTimeout(timer);
    return info;
  }

  kill(): Promise<ExitInfo> {
    this.requestedStop = true;
    this.signal('SIGKILL');
    return this.exited;
  }

  suspend(): void {
    this.signal('SIGSTOP');
  }

  resume(): void {
    this.signal('SIGCONT');
  }

  async confirmStopped(): Promise<boolean> {
    return this.suspended || !this.alive;
  }

  private shutdown(reason: string): Promise<void> {
    const agent = this.agent;
    if (!agent || agent.state === 'closing' || agent.state === 'stopped') return Promise.resolve();
    agent.core.logger.info({ reason }, 'shutdown requested');
    return agent.close({ graceMs: 5000 }).then(
      () => this.finish(0, null),
      () => this.finish(0, null),
    );
  }

  private finish(exitCode: number, signal: NodeJS.Signals | null): void {
    if (this.exitInfo) return;
    this.exitInfo = { exitCode, signal, oomKilled: false, requestedStop: this.requestedStop, exitedAt: this.clock.now() };
    this.resolveExit(this.exitInfo);
  }
}
