import { useEffect, useRef, useSyncExternalStore } from 'react';
import { socketUrl } from './api.js';
import type { CallsPulse, HeartbeatPulse, PlatformEvent } from './types.js';

export type LiveState = 'connecting' | 'live' | 'reconnecting';

/**
 * One WebSocket to /ws for the whole page, shared by every view that wants live events. It reconnects with
 * backoff; listeners are told when it (re)connects so they can reload what they might have missed meanwhile.
 */
class LiveEvents {
  private socket: WebSocket | null = null;
  private listeners = new Set<(ev: PlatformEvent) => void>();
  private heartbeatListeners = new Set<(p: HeartbeatPulse) => void>();
  private callListeners = new Set<(p: CallsPulse) => void>();
  private reconnectListeners = new Set<() => void>();
  private stateListeners = new Set<() => void>();
  private retry = 0;
  private timer: ReturnType<typeof setTimeout> | undefined;
  private opened = false;
  state: LiveState = 'connecting';

  private url = '';

  start(): void {
    if (this.socket) return;
    this.url = socketUrl();
    const ws = new WebSocket(this.url);
    this.socket = ws;
    ws.onopen = () => {
      this.retry = 0;
      this.setState('live');
      if (this.opened) this.reconnectListeners.forEach((fn) => fn());
      this.opened = true;
    };
    ws.onmessage = (m) => {
      let ev: PlatformEvent | HeartbeatPulse | CallsPulse;
      try {
        ev = JSON.parse(String(m.data)) as PlatformEvent | HeartbeatPulse | CallsPulse;
      } catch {
        return;
      }
      if (ev.type === 'workspace.heartbeat') this.heartbeatListeners.forEach((fn) => fn(ev as HeartbeatPulse));
      else if (ev.type === 'a2a.calls') this.callListeners.forEach((fn) => fn(ev as CallsPulse));
      else this.listeners.forEach((fn) => fn(ev as PlatformEvent));
    };
    ws.onclose = () => {
      if (this.socket !== ws) return;
      this.socket = null;
      this.setState('reconnecting');
      const delay = Math.min(10_000, 500 * 2 ** this.retry++);
      this.timer = setTimeout(() => this.start(), delay);
    };
  }

  /** Connects, or reconnects when the token (and so the URL) changed since the socket was opened. */
  connect(): void {
    if (this.socket && this.url === socketUrl()) return;
    this.disconnect();
    this.start();
  }

  /** Signed out: stop listening, and do not come back by itself. */
  disconnect(): void {
    clearTimeout(this.timer);
    const old = this.socket;
    this.socket = null;
    old?.close();
    this.opened = false;
    this.setState('connecting');
  }

  on(fn: (ev: PlatformEvent) => void, onReconnect?: () => void): () => void {
    this.listeners.add(fn);
    if (onReconnect) this.reconnectListeners.add(onReconnect);
    return () => {
      this.listeners.delete(fn);
      if (onReconnect) this.reconnectListeners.delete(onReconnect);
    };
  }

  onHeartbeat(fn: (p: HeartbeatPulse) => void): () => void {
    this.heartbeatListeners.add(fn);
    return () => this.heartbeatListeners.delete(fn);
  }

  onCalls(fn: (p: CallsPulse) => void): () => void {
    this.callListeners.add(fn);
    return () => this.callListeners.delete(fn);
  }

  subscribeState = (fn: () => void): (() => void) => {
    this.stateListeners.add(fn);
    return () => this.stateListeners.delete(fn);
  };

  private setState(s: LiveState): void {
    this.state = s;
    this.stateListeners.forEach((fn) => fn());
  }
}

export const live = new LiveEvents();

export function useLiveState(): LiveState {
  return useSyncExternalStore(live.subscribeState, () => live.state);
}

/** Calls onEvent for each live event (latest callback, no resubscribe per render); onReconnect after a gap. */
export function useLiveEvents(onEvent: (ev: PlatformEvent) => void, onReconnect?: () => void): void {
  const handlers = useRef({ onEvent, onReconnect });
  handlers.current = { onEvent, onReconnect };
  useEffect(
    () =>
      live.on(
        (ev) => handlers.current.onEvent(ev),
        () => handlers.current.onReconnect?.(),
      ),
    [],
  );
}

/** Calls onPulse for each heartbeat pulse (last heartbeat time, current task) pushed over /ws. */
export function useLiveHeartbeats(onPulse: (p: HeartbeatPulse) => void): void {
  const handler = useRef(onPulse);
  handler.current = onPulse;
  useEffect(() => live.onHeartbeat((p) => handler.current(p)), []);
}

/** Calls onPulse for each agent-to-agent traffic pulse (calls, errors, latencies on one edge) pushed over /ws. */
export function useLiveCalls(onPulse: (p: CallsPulse) => void): void {
  const handler = useRef(onPulse);
  handler.current = onPulse;
  useEffect(() => live.onCalls((p) => handler.current(p)), []);
}

/** What a view does about one workspace event: fetch that workspace again, fetch everything again, or nothing. */
export type LiveRefresh = 'one' | 'all' | 'none';

/**
 * Live workspace events turned into fetches, batched. `decide` says per event what it means for the view: a burst
 * of events about workspaces shown becomes one fetch of each (`refreshOne`, 80 ms after the first), anything that
 * may change what is shown one `reload` (500 ms after). A steady stream of events does not push the fetch back, and
 * after a reconnect (events may have been missed) the view reloads. The latest callbacks are used, so they may
 * close over state.
 */
export function useLiveRefresh(decide: (ev: PlatformEvent & { workspace_id: string }) => LiveRefresh, refreshOne: (id: string) => unknown, reload: () => unknown): void {
  const latest = useRef({ decide, refreshOne, reload });
  latest.current = { decide, refreshOne, reload };
  const pending = useRef(new Set<string>());
  const reloadSoon = useRef(false);
  const flush = useRef<ReturnType<typeof setTimeout> | undefined>(undefined);
  useEffect(() => () => clearTimeout(flush.current), []);
  useLiveEvents(
    (ev) => {
      if (!ev.workspace_id || !ev.type.startsWith('workspace.')) return;
      const what = latest.current.decide(ev as PlatformEvent & { workspace_id: string });
      if (what === 'none') return;
      if (what === 'one') pending.current.add(ev.workspace_id);
      else reloadSoon.current = true;
      if (flush.current) return;
      flush.current = setTimeout(
        () => {
          flush.current = undefined;
          const ids = [...pending.current];
          pending.current.clear();
          if (reloadSoon.current) {
            reloadSoon.current = false;
            void latest.current.reload();
          } else ids.forEach((id) => void latest.current.refreshOne(id));
        },
        reloadSoon.current ? 500 : 80,
      );
    },
    () => void latest.current.reload(),
  );
}
