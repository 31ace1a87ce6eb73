/**
 * Runs one machine's main process on this host: spawn, signal (to the whole process group), stop with
 * SIGKILL escalation, SIGSTOP/SIGCONT for suspend/resume, output capture.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { connect } from 'node:net';
import type { Clock } from './util.js';
import { signalNumber } from './util.js';

/** What to run for an image. */
export interface BootCommand {
  command: string;
  args: string[];
  /** Extra environment (below the machine's own config.env and Fly's variables). */
  env?: Record<string, string>;
  cwd?: string;
}

export interface ExitInfo {
  /** Exit code; for a signal death, 128 + the signal number (what a shell and Fly report). */
  exitCode: number;
  signal: NodeJS.Signals | null;
  oomKilled: boolean;
  /** The exit followed a stop/kill the simulator sent on request (stop, restart, update, destroy, suspend→stop). */
  requestedStop: boolean;
  exitedAt: number;
}

export type LogStream = 'stdout' | 'stderr' | 'sim';

export interface LogLine {
  seq: number;
  timestamp: number;
  stream: LogStream;
  message: string;
  /** Machine version (instance id) that produced the line. */
  instance: string;
}

/** Bounded ring buffer of log lines with live subscribers (for `?follow=1`). */
export class LogBuffer {
  private lines: LogLine[] = [];
  private seq = 0;
  private subs = new Set<(l: LogLine) => void>();
  constructor(private readonly max = 5000) {}

  push(stream: LogStream, message: string, instance: string, timestamp: number): void {
    const line: LogLine = { seq: ++this.seq, timestamp, stream, message, instance };
    this.lines.push(line);
    if (this.lines.length > this.max) this.lines.splice(0, this.lines.length - this.max);
    for (const s of this.subs) s(line);
  }

  tail(n?: number): LogLine[] {
    return n === undefined ? [...this.lines] : this.lines.slice(Math.max(0, this.lines.length - n));
  }

  subscribe(fn: (l: LogLine) => void): () => void {
    this.subs.add(fn);
    return () => this.subs.delete(fn);
  }
}

/**
 * A machine's main process as the engine drives it: a child process (MachineProcess) or, with `light`, an agent
 * running inside the simulator (LightProcess in light.ts). Both die, stop, suspend and report their exit the same way.
 */
export interface MainProcess {
  /** OS pid; undefined for a light agent (it has none). */
  readonly pid: number | undefined;
  readonly exited: Promise<ExitInfo>;
  readonly spawned: Promise<boolean>;
  spawnError: Error | null;
  exitInfo: ExitInfo | null;
  requestedStop: boolean;
  suspended: boolean;
  readonly alive: boolean;
  signal(sig: NodeJS.Signals): void;
  stop(signal: NodeJS.Signals, timeoutMs: number): Promise<ExitInfo>;
  kill(): Promise<ExitInfo>;
  suspend(): void;
  resume(): void;
  confirmStopped(timeoutMs?: number): Promise<boolean>;
  /** Light agents only: answers a request the proxy would otherwise forward to a local port. */
  dispatch?(req: IncomingMessage, res: ServerResponse): void;
  /** Light agents only: a request answered in memory (config.checks). Rejects when nothing answers. */
  probe?(method: 'GET' | 'HEAD' | 'POST', path: string): Promise<{ status: number; body: string }>;
}

const OOM_PATTERNS = [/JavaScript heap out of memory/, /Reached heap limit/, /Out of memory/i];

export class MachineProcess implements MainProcess {
  readonly child: ChildProcess;
  readonly pid: number | undefined;
  /** Resolves once, when the process has exited (or failed to spawn). */
  readonly exited: Promise<ExitInfo>;
  /** Resolves true when the OS started the process, false if spawning failed. */
  readonly spawned: Promise<boolean>;
  spawnError: Error | null = null;
  exitInfo: ExitInfo | null = null;
  requestedStop = false;
  suspended = false;
  private oom = false;
  private partial: Record<'stdout' | 'stderr', string> = { stdout: '', stderr: '' };

  constructor(
    cmd: BootCommand,
    env: Record<string, string>,
    private readonly clock: Clock,
    onLine: (stream: 'stdout' | 'stderr', line: string) => void,
  ) {
    this.child = spawn(cmd.command, cmd.args, {
      env,
      cwd: cmd.cwd,
      stdio: ['ignore', 'pipe', 'pipe'],
      // Own process group: signals reach the whole tree, and a Ctrl-C in the sim's terminal does not.
      detached: true,
    });
    this.pid = this.child.pid;
    for (const stream of ['stdout', 'stderr'] as const) {
      const s = this.child[stream];
      s?.setEncoding('utf8');
      s?.on('data', (chunk: string) => {
        const text = this.partial[stream] + chunk;
        const parts = text.split('\n');
        this.partial[stream] = parts.pop() ?? '';
        for (const raw of parts) {
          const line = raw.replace(/\r$/, '');
          if (stream === 'stderr' && OOM_PATTERNS.some((re) => re.test(line))) this.oom = true;
          onLine(stream, line);
        }
      });
      s?.on('end', () => {
        if (this.partial[stream]) onLine(stream, this.partial[stream]);
        this.partial[stream] = '';
      });
    }
    this.spawned = new Promise((resolve) => {
      this.child.once('spawn', () => resolve(true));
      this.child.once('error', (err) => {
        this.spawnError = err;
        resolve(false);
      });
    });
    this.exited = new Promise((resolve) => {
      const finish = (code: number | null, signal: NodeJS.Signals | null) => {
        if (this.exitInfo) return;
        this.exitInfo = {
          exitCode: code ?? (signal ? 128 + signalNumber(signal) : 1),
          signal,
          oomKilled: this.oom,
          requestedStop: this.requestedStop,
          exitedAt: this.clock.now(),
        };
        resolve(this.exitInfo);
      };
      this.child.once('exit', finish);
      this.child.once('error', () => {
        // spawn failure: no 'exit' event follows
        if (this.child.pid === undefined) finish(127, null);
      });
    });
  }

  get alive(): boolean {
    return this.exitInfo === null && this.spawnError === null;
  }

  /** Sends a signal to the process group (falls back to the process). No-op once exited. */
  signal(sig: NodeJS.Signals): void {
    if (!this.alive || this.pid === undefined) return;
    try {
      process.kill(-this.pid, sig);
    } catch {
      try {
        process.kill(this.pid, sig);
      } catch {
        /* already gone */
      }
    }
  }

  /**
   * Stops the process: `signal`, then SIGKILL after `timeoutMs` (on the sim's clock). A suspended process is
   * continued first so it can handle the signal. Marks the exit as requested.
   */
  async stop(signal: NodeJS.Signals, timeoutMs: number): Promise<ExitInfo> {
    this.requestedStop = true;
    if (!this.alive) return this.exited;
    if (signal === 'SIGKILL' || timeoutMs <= 0) return this.kill();
    this.signal(signal);
    if (this.suspended) this.resume();
    const timer = this.clock.setTimeout(() => this.signal('SIGKILL'), timeoutMs);
    const info = await this.exited;
    this.clock.clearTimeout(timer);
    return info;
  }

  /** SIGKILL now (works on a stopped process too). */
  kill(): Promise<ExitInfo> {
    this.requestedStop = true;
    this.signal('SIGKILL');
    if (this.suspended) this.resume();
    return this.exited;
  }

  suspend(): void {
    this.signal('SIGSTOP');
    this.suspended = true;
  }

  /**
   * Resolves once the kernel reports the process stopped (state T in /proc/<pid>/stat), or after timeoutMs.
   * Signal delivery is asynchronous; without /proc (not Linux) it resolves at once. Real time (this is I/O).
   */
  async confirmStopped(timeoutMs = 2000): Promise<boolean> {
    if (this.pid === undefined) return false;
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      let stat: string;
      try {
        stat = await readFile(`/proc/${this.pid}/stat`, 'utf8');
      } catch {
        return !this.alive; // no /proc, or the process is gone
      }
      const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
      if (state === 'T' || state === 't') return true;
      if (!this.alive || Date.now() > deadline) return false;
      await new Promise((r) => setTimeout(r, 5));
    }
  }

  resume(): void {
    this.suspended = false;
    this.signal('SIGCONT');
  }
}

/** True once a TCP connect to host:port succeeds. */
export function canConnect(port: number, host = '127.0.0.1', timeoutMs = 500): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = connect({ port, host });
    const done = (ok: boolean) => {
      sock.removeAllListeners();
      sock.destroy();
      resolve(ok);
    };
    sock.setTimeout(timeoutMs, () => done(false));
    sock.once('connect', () => done(true));
    sock.once('error', () => done(false));
  });
}

/**
 * Polls until the port accepts connections. Resolves 'open', 'exited' (the process died first), 'cancelled'
 * (isCancelled() turned true) or 'timeout'. Real time: this is I/O, not simulated time.
 */
export async function waitForPort(
  port: number,
  proc: MainProcess,
  timeoutMs: number,
  isCancelled: () => boolean,
): Promise<'open' | 'exited' | 'cancelled' | 'timeout'> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (isCancelled()) return 'cancelled';
    if (!proc.alive) return 'exited';
    if (await canConnect(port)) return proc.alive ? 'open' : 'exited';
    if (Date.now() > deadline) return 'timeout';
    await new Promise((r) => setTimeout(r, 25));
  }
}

