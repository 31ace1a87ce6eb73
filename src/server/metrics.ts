import client from 'prom-client';
import type { WorkspaceStore } from '../core/ports.js';
import type { EventBus } from '../core/events.js';
import { WORKSPACE_STATUSES } from '../core/types.js';

/** Prometheus metrics on a registry of our own (tests build several apps in one process). */
export function createMetrics(workspaces: WorkspaceStore, bus: EventBus) {
  const registry = new client.Registry();
  client.collectDefaultMetrics({ register: registry });
  const httpDuration = new client.Histogram({
    name: 'molecule_http_request_duration_seconds',
    help: 'REST API request duration',
    labelNames: ['method', 'route', 'status'],
    buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30],
    registers: [registry],
  });
  const a2a = new client.Counter({
    name: 'molecule_a2a_requests_total',
    help: 'A2A requests through the proxy, by outcome',
    labelNames: ['outcome'],
    registers: [registry],
  });
  const events = new client.Counter({
    name: 'molecule_events_total',
    help: 'Lifecycle events published by this replica',
    labelNames: ['type'],
    registers: [registry],
  });
  // A stream whose client has gone must leave this gauge: one that stays up is a leaked handler and upstream.
  const openStreams = new client.Gauge({
    name: 'molecule_open_streams',
    help: 'Streaming answers in progress: log follows, A2A SSE relays, event streams',
    labelNames: ['kind'],
    registers: [registry],
  });
  for (const kind of ['logs', 'a2a', 'events']) openStreams.set({ kind }, 0);
  new client.Gauge({
    name: 'molecule_workspaces',
    help: 'Workspaces by status',
    labelNames: ['status'],
    registers: [registry],
    async collect() {
      const counts = await workspaces.countByStatus();
      for (const s of WORKSPACE_STATUSES) this.set({ status: s }, counts[s] ?? 0);
    },
  });
  // Idle sleep (core/idle.ts): counted where the status change is published, so each counts once in the cluster.
  const sleeps = new client.Counter({ name: 'molecule_workspace_sleeps_total', help: 'Workspaces put to sleep by their idle timeout', registers: [registry] });
  const wakes = new client.Counter({
    name: 'molecule_workspace_wakes_total',
    help: 'Sleeping workspaces woken, by what woke them (a2a: a message; request: POST /workspaces/:id/wake)',
    labelNames: ['trigger'],
    registers: [registry],
  });
  for (const trigger of ['a2a', 'request']) wakes.inc({ trigger }, 0);
  const wakeToFirstReply = new client.Histogram({
    name: 'molecule_wake_to_first_reply_seconds',
    help: 'From the A2A request that found a workspace sleeping to the start of the first answer after its wake',
    buckets: [0.25, 0.5, 1, 2, 3, 5, 10, 20, 30, 60, 120],
    registers: [registry],
  });
  const unsubscribe = bus.subscribePublished((ev) => {
    events.inc({ type: ev.type });
    if (ev.type !== 'workspace.status') return;
    if (ev.data.to === 'sleeping') sleeps.inc();
    else if (ev.data.from === 'sleeping' && ev.data.reason === 'woken by A2A') wakes.inc({ trigger: 'a2a' });
    else if (ev.data.from === 'sleeping' && ev.data.reason === 'wake requested') wakes.inc({ trigger: 'request' });
  });
  return { registry, httpDuration, a2a, openStreams, wakeToFirstReply, close: unsubscribe };
}
export type Metrics = ReturnType<typeof createMetrics>;
