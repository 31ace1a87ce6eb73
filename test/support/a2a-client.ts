import crypto from 'node:crypto';

/** A v0.3 JSON-RPC request carrying one user text message. */
export function a2aRequest(method: 'message/send' | 'message/stream', text: string, id: string = crypto.randomUUID()): Record<string, unknown> {
  return { jsonrpc: '2.0', id, method, params: { message: { kind: 'message', role: 'user', messageId: crypto.randomUUID(), parts: [{ kind: 'text', text }] } } };
}

/** POSTs an A2A JSON-RPC body and reads the reply: JSON, or every SSE `data:` frame parsed when the answer streams. */
export async function a2aCall(
  url: string,
  body: unknown,
  headers: Record<string, string> = {},
): Promise<{ status: number; contentType: string; json?: any; events: any[] }> {
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify(body),
  });
  const contentType = res.headers.get('content-type') ?? '';
  const text = await res.text();
  if (!contentType.includes('text/event-stream')) {
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch {
      json = undefined;
    }
    return { status: res.status, contentType, json, events: [] };
  }
  const events = text
    .split(/\r?\n\r?\n/)
    .map((frame) => frame.split(/\r?\n/).filter((l) => l.startsWith('data:')).map((l) => l.slice(5).trimStart()).join('\n'))
    .filter((data) => data !== '')
    .map((data) => JSON.parse(data));
  return { status: res.status, contentType, events };
}

/** The text an A2A stream ended with: the final status message, or the concatenated answer artifact. */
export function streamedText(events: any[]): string {
  const last = events.at(-1)?.result;
  const final = last?.status?.message?.parts?.map((p: any) => p.text ?? '').join('');
  if (final) return final;
  return events
    .map((e) => e.result)
    .filter((r) => r?.kind === 'artifact-update')
    .flatMap((r) => r.artifact.parts.map((p: any) => p.text ?? ''))
    .join('');
}
