import http from 'node:http';
import { once } from 'node:events';

/**
 * A local OpenAI-compatible chat completions server. It records every request body, answers with scripted
 * text, streams it as SSE when asked, and can hold the last chunk of a stream until the test opens the gate.
 */
export interface FakeOpenAI {
  url: string;
  requests: any[];
  reply: (body: any) => string;
  /** When set, streams pause before their final chunk until release() is called. */
  gate: { promise: Promise<void>; release: () => void } | null;
  holdNextStream(): void;
  close(): Promise<void>;
}

export async function startFakeOpenAI(reply: (body: any) => string): Promise<FakeOpenAI> {
  const fake: FakeOpenAI = {
    url: '',
    requests: [],
    reply,
    gate: null,
    holdNextStream() {
      let release!: () => void;
      const promise = new Promise<void>((r) => (release = r));
      fake.gate = { promise, release };
    },
    close: async () => {
      server.closeAllConnections();
      server.close();
      await once(server, 'close');
    },
  };
  const server = http.createServer(async (req, res) => {
    let raw = '';
    for await (const c of req) raw += c;
    if (req.method !== 'POST' || !req.url?.endsWith('/chat/completions')) {
      res.writeHead(404, { 'content-type': 'application/json' }).end(JSON.stringify({ error: { message: 'not found' } }));
      return;
    }
    const body = JSON.parse(raw);
    fake.requests.push({ ...body, authorization: req.headers.authorization });
    // A model that never answers: the connection stays open until the server closes.
    if (raw.includes('HANG FOREVER')) return;
    const text = fake.reply(body);
    const base = { id: `chatcmpl-${fake.requests.length}`, created: Math.floor(Date.now() / 1000), model: body.model };
    if (!body.stream) {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ ...base, object: 'chat.completion', choices: [{ index: 0, finish_reason: 'stop', message: { role: 'assistant', content: text } }], usage: { prompt_tokens: 1, completion_tokens: 1, total_tokens: 2 } }));
      return;
    }
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
    const words = text.split(/(?<= )/);
    const chunk = (delta: object, finish: string | null = null) =>
      res.write(`data: ${JSON.stringify({ ...base, object: 'chat.completion.chunk', choices: [{ index: 0, delta, finish_reason: finish }] })}\n\n`);
    chunk({ role: 'assistant', content: '' });
    for (const w of words.slice(0, -1)) chunk({ content: w });
    const gate = fake.gate;
    if (gate) {
      fake.gate = null;
      await gate.promise;
    }
    chunk({ content: words[words.length - 1] });
    chunk({}, 'stop');
    res.end('data: [DONE]\n\n');
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  fake.url = `http://127.0.0.1:${(server.address() as any).port}/v1`;
  return fake;
}
