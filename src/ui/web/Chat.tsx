import { useEffect, useRef, useState, type FormEvent, type KeyboardEvent } from 'react';
import { ApiFailure, request } from './api.js';
import { sseJson, uid } from './sse.js';

interface Turn {
  id: string;
  from: 'user' | 'agent';
  text: string;
  state: 'streaming' | 'done' | 'failed';
}

type Part = { kind?: string; text?: string };
interface RpcEvent {
  result?: {
    kind?: string;
    contextId?: string;
    parts?: Part[];
    artifact?: { parts?: Part[] };
    append?: boolean;
    status?: { state?: string; message?: { parts?: Part[] } };
    final?: boolean;
  };
  error?: { message?: string; code?: number; data?: { code?: string } };
}

/**
 * A JSON-RPC error, as the proxy sends every one of them (HTTP 200): its message, and the machine-readable reason
 * (error.data.code, e.g. workspace_not_ready) or else the JSON-RPC code.
 */
const rpcErrorText = (e: NonNullable<RpcEvent['error']>) =>
  `${e.message ?? 'the agent answered with an error'} (${typeof e.data?.code === 'string' ? e.data.code : `JSON-RPC ${e.code ?? '?'}`})`;

const textOf = (parts: Part[] | undefined) => (parts ?? []).map((p) => p.text ?? '').join('');

/**
 * Chat with the workspace's agent over A2A through the platform's proxy: message/stream, whose server-sent events
 * (a task, answer chunks, a final status) are read from the response body as they arrive.
 */
export function Chat({ workspaceId, canChat, statusNote }: { workspaceId: string; canChat: boolean; statusNote: string }) {
  const [turns, setTurns] = useState<Turn[]>([]);
  const [text, setText] = useState('');
  const [busy, setBusy] = useState(false);
  const contextId = useRef<string | undefined>(undefined);
  const abort = useRef<AbortController | null>(null);
  const end = useRef<HTMLDivElement>(null);

  useEffect(() => () => abort.current?.abort(), []);
  // Braces matter: newer browsers return a Promise from scrollIntoView, and an effect may only return a cleanup.
  useEffect(() => {
    end.current?.scrollIntoView({ block: 'nearest' });
  }, [turns]);

  const update = (id: string, f: (t: Turn) => Turn) => setTurns((ts) => ts.map((t) => (t.id === id ? f(t) : t)));

  const send = async (e?: FormEvent) => {
    e?.preventDefault();
    const question = text.trim();
    if (!question || busy) return;
    setText('');
    setBusy(true);
    const replyId = uid();
    setTurns((ts) => [...ts, { id: uid(), from: 'user', text: question, state: 'done' }, { id: replyId, from: 'agent', text: '', state: 'streaming' }]);
    abort.current = new AbortController();
    try {
      const res = await request('POST', `/workspaces/${workspaceId}/a2a`, {
        headers: { accept: 'text/event-stream' },
        signal: abort.current.signal,
        body: {
          jsonrpc: '2.0',
          id: uid(),
          method: 'message/stream',
          params: {
            message: { kind: 'message', messageId: uid(), role: 'user', parts: [{ kind: 'text', text: question }], ...(contextId.current ? { contextId: contextId.current } : {}) },
          },
        },
      });
      const events: AsyncIterable<unknown> = (res.headers.get('content-type') ?? '').includes('event-stream') ? sseJson(res) : single(res);
      for await (const raw of events) {
        const ev = raw as RpcEvent;
        if (ev.error) throw new Error(rpcErrorText(ev.error));
        const r = ev.result;
        if (!r) continue;
        if (r.contextId) contextId.current = r.contextId;
        if (r.kind === 'artifact-update') {
          const chunk = textOf(r.artifact?.parts);
          update(replyId, (t) => ({ ...t, text: r.append ? t.text + chunk : chunk }));
        } else if (r.kind === 'message') {
          update(replyId, (t) => ({ ...t, text: textOf(r.parts), state: 'done' }));
        } else if (r.kind === 'status-update') {
          const note = textOf(r.status?.message?.parts);
          const state = r.status?.state;
          if (state === 'failed' || state === 'rejected' || state === 'canceled') {
            update(replyId, (t) => ({ ...t, text: t.text || note || `The task ended ${state}.`, state: 'failed' }));
          } else if (r.final) {
            update(replyId, (t) => ({ ...t, text: t.text || note, state: 'done' }));
          }
        }
      }
      update(replyId, (t) => ({ ...t, state: t.state === 'streaming' ? 'done' : t.state }));
    } catch (err) {
      if ((err as Error).name === 'AbortError') return;
      const msg = err instanceof ApiFailure ? `${err.message} (HTTP ${err.status})` : (err as Error).message;
      update(replyId, (t) => ({ ...t, text: t.text ? `${t.text}\n\n${msg}` : msg, state: 'failed' }));
    } finally {
      setBusy(false);
    }
  };

  const onKey = (e: KeyboardEvent<HTMLTextAreaElement>) => {
    if (e.key === 'Enter' && !e.shiftKey && !e.nativeEvent.isComposing) {
      e.preventDefault();
      void send();
    }
  };

  return (
    <div className="chat">
      <div className="chat-log" role="log" aria-label="Conversation" aria-live="polite">
        {turns.length === 0 && <p className="muted">Ask the agent something, e.g. “What region are you running in?”</p>}
        {turns.map((t) => (
          <div key={t.id} className={`turn turn-${t.from} turn-${t.state}`} data-state={t.state}>
            <span className="who">{t.from === 'user' ? 'You' : 'Agent'}</span>
            <div className="bubble">
              {t.text}
              {t.state === 'streaming' && <span className="cursor" aria-label="still answering" />}
            </div>
          </div>
        ))}
        <div ref={end} />
      </div>
      <form className="chat-form" onSubmit={send}>
        <label htmlFor="chat-input" className="visually-hidden">
          Message to the agent
        </label>
        <textarea
          id="chat-input"
          rows={2}
          value={text}
          placeholder={canChat ? 'Message the agent (Enter sends, Shift+Enter for a new line)' : statusNote}
          disabled={!canChat}
          onChange={(e) => setText(e.target.value)}
          onKeyDown={onKey}
        />
        <button type="submit" className="primary" disabled={!canChat || busy || !text.trim()}>
          {busy ? 'Answering…' : 'Send'}
        </button>
      </form>
    </div>
  );
}

async function* single(res: Response): AsyncGenerator<unknown> {
  yield await res.json();
}
