import fs from 'node:fs';
import net from 'node:net';
import { once } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';

/**
 * Clients that stop reading, and what the kernel says about them (Linux /proc): for tests of streaming answers
 * whose client stalls and then goes away.
 */

/** An HTTP client on a raw socket that never reads past the first bytes, so the server's writes back up. */
export async function stalledRequest(port: number, head: string, body = ''): Promise<net.Socket> {
  const sock = net.connect(port, '127.0.0.1');
  await once(sock, 'connect');
  sock.write(`${head}\r\nHost: 127.0.0.1\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
  // 'readable' without read(): the answer has started; the socket then reads no further than its buffer.
  await once(sock, 'readable');
  const first = sock.read(12)?.toString() ?? '';
  if (!/^HTTP\/1\.1 200/.test(first)) {
    sock.destroy();
    throw new Error(`expected a 200 answer to start, got ${JSON.stringify(first)}`);
  }
  return sock;
}

/** The file descriptors of this process (the platform runs in it) open on files under dir. */
export function openFilesUnder(dir: string): string[] {
  const out: string[] = [];
  for (const fd of fs.readdirSync('/proc/self/fd')) {
    try {
      const target = fs.readlinkSync(`/proc/self/fd/${fd}`);
      if (target.startsWith(dir)) out.push(target);
    } catch {
      /* closed meanwhile */
    }
  }
  return out;
}

/** Send and receive queues (bytes) of this host's TCP socket from localPort to peerPort (Linux /proc). */
export function tcpQueues(localPort: number, peerPort: number): { tx: number; rx: number } | undefined {
  for (const file of ['/proc/net/tcp', '/proc/net/tcp6']) {
    for (const line of fs.readFileSync(file, 'utf8').split('\n').slice(1)) {
      const cols = line.trim().split(/\s+/);
      if (cols.length < 5) continue;
      const port = (addr: string) => parseInt(addr.slice(addr.lastIndexOf(':') + 1), 16);
      if (port(cols[1]!) !== localPort || port(cols[2]!) !== peerPort) continue;
      const [tx, rx] = cols[4]!.split(':').map((h) => parseInt(h, 16));
      return { tx: tx!, rx: rx! };
    }
  }
  return undefined;
}

/**
 * Waits until the server has stopped sending to the stalled client: data waits in its send queue and the queue
 * has not moved for a while, although the source keeps producing. The server is then waiting for 'drain'.
 */
export async function blockedOn(serverPort: number, client: net.Socket) {
  let last = -1;
  await steadily('the server to block on the stalled client', () => {
    const q = tcpQueues(serverPort, client.localPort!);
    const stuck = !!q && q.tx > 0 && q.tx === last;
    last = q?.tx ?? -1;
    return stuck;
  });
}

/** Holds until fn has been true on every check for `forMs`. */
export async function steadily(what: string, fn: () => boolean | Promise<boolean>, forMs = 1000, timeoutMs = 60_000) {
  const deadline = Date.now() + timeoutMs;
  let since = 0;
  for (;;) {
    if (await fn()) {
      since ||= Date.now();
      if (Date.now() - since >= forMs) return;
    } else since = 0;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}
