import { EventEmitter } from 'node:events';
import { readBody, TestServer } from './http.js';

export interface PlatformCall {
  path: string;
  authorization: string | undefined;
  body: Record<string, unknown>;
}

type StatusFn = (call: PlatformCall, index: number) => number;

/** Records `/registry/register` and `/registry/heartbeat` calls and answers with scripted statuses. */
export class FakePlatform {
  readonly calls: PlatformCall[] = [];
  registerStatus: StatusFn = () => 200;
  heartbeatStatus: StatusFn = () => 200;
  private readonly events = new EventEmitter();
  private readonly http: TestServer;

  constructor() {
    this.events.setMaxListeners(100);
    this.http = new TestServer(async (req, res) => {
      const text = await readBody(req);
      let body: Record<string, unknown> = {};
      try {
        body = JSON.parse(text) as Record<string, unknown>;
      } catch {
        /* recorded as {} */
      }
      const call: PlatformCall = { path: req.url ?? '', authorization: req.headers.authorization, body };
      const isRegister = call.path === '/registry/register';
      const index = this.calls.filter((c) => c.path === call.path).length;
      this.calls.push(call);
      const status = isRegister ? this.registerStatus(call, index) : this.heartbeatStatus(call, index);
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(
        JSON.stringify(
          status < 300
            ? { workspace_id: 'ws-test', status: 'ready', heartbeat_interval_s: 10 }
            : { error: `scripted ${status}`, code: 'scripted' },
        ),
      );
      this.events.emit('call');
    });
  }

  listen(port = 0): Promise<string> {
    return this.http.listen(port);
  }

  get url(): string {
    return this.http.url;
  }

  close(): Promise<void> {
    return this.http.close();
  }

  registers(): PlatformCall[] {
    return this.calls.filter((c) => c.path === '/registry/register');
  }

  heartbeats(): PlatformCall[] {
    return this.calls.filter((c) => c.path === '/registry/heartbeat');
  }

  /** Resolves once at least `count` calls to `path` have been recorded (event-driven, no polling). */
  waitFor(path: 'register' | 'heartbeat', count = 1, timeoutMs = 15_000): Promise<PlatformCall[]> {
    const full = `/registry/${path}`;
    const matching = () => this.calls.filter((c) => c.path === full);
    return new Promise((resolve, reject) => {
      const check = () => {
        const found = matching();
        if (found.length >= count) {
          cleanup();
          resolve(found);
        }
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(new Error(`timed out waiting for ${count} ${path} call(s); got ${matching().length}`));
      }, timeoutMs);
      const cleanup = () => {
        clearTimeout(timer);
        this.events.off('call', check);
      };
      this.events.on('call', check);
      check();
    });
  }
}
