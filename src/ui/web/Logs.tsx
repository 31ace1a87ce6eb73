import { useEffect, useLayoutEffect, useRef, useState } from 'react';
import { ApiFailure, request } from './api.js';
import { textLines } from './sse.js';

const KEEP = 2000;

/**
 * The instance's output, followed live (GET /workspaces/:id/logs?follow=1). When the stream ends, as it does
 * when the instance is replaced, it is opened again and the tail replaces what was shown.
 */
/** `epoch` changes when the instance does (a new one, or one that just came up): the stream is opened again at once. */
export function Logs({ workspaceId, epoch }: { workspaceId: string; epoch: string }) {
  const [lines, setLines] = useState<string[]>([]);
  const [state, setState] = useState<'connecting' | 'following' | 'waiting' | 'unavailable'>('connecting');
  const [note, setNote] = useState('');
  const box = useRef<HTMLPreElement>(null);
  const stick = useRef(true);

  useEffect(() => {
    const abort = new AbortController();
    void (async () => {
      // A stream that ends at once (no instance yet, or a backend that cannot follow) is retried ever more slowly.
      let pause = 1500;
      while (!abort.signal.aborted) {
        const opened = Date.now();
        try {
          const res = await request('GET', `/workspaces/${workspaceId}/logs?follow=1&tail=200`, { signal: abort.signal });
          setLines([]);
          setState('following');
          for await (const chunk of textLines(res)) setLines((ls) => [...ls, ...chunk].slice(-KEEP));
          setState('waiting');
        } catch (e) {
          if (abort.signal.aborted) return;
          if (e instanceof ApiFailure && (e.status === 404 || e.status === 410)) {
            setState('unavailable');
            setNote(e.message);
            return;
          }
          setState('waiting');
          setNote(e instanceof ApiFailure ? e.message : '');
        }
        pause = Date.now() - opened > 10_000 ? 1500 : Math.min(pause * 2, 30_000);
        await new Promise((r) => setTimeout(r, pause));
      }
    })();
    return () => abort.abort();
  }, [workspaceId, epoch]);

  useLayoutEffect(() => {
    const el = box.current;
    if (el && stick.current) el.scrollTop = el.scrollHeight;
  }, [lines]);

  const label = { connecting: 'connecting…', following: 'following', waiting: 'waiting for the instance…', unavailable: 'unavailable' }[state];
  return (
    <div className="logs">
      <p className="muted small">
        Live tail: <span data-log-state={state}>{label}</span>
        {note && state !== 'following' ? ` — ${note}` : ''}
      </p>
      <pre
        ref={box}
        className="log-box"
        tabIndex={0}
        aria-label="Instance log"
        onScroll={(e) => {
          const el = e.currentTarget;
          stick.current = el.scrollHeight - el.scrollTop - el.clientHeight < 24;
        }}
      >
        {lines.length ? lines.join('\n') : <span className="muted">No output yet.</span>}
      </pre>
    </div>
  );
}
