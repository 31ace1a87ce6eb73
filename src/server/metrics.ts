import client from 'prom-client';
import type { WorkspaceStore } from '../core/ports.js';
import type { EventBus } from '../core/events.js';
import { WORKSPACE_STATUSES } from '../core/types.js';
import type { BackendCallObserver } from '../core/backend-calls.js';
import { FAILURE_REASONS, lifecycleOutcome, RESTART_REASONS } from '../core/reason-codes.js';

/** How a provisioning began: a new workspace, a restart (automatic or asked for, or a resume), or a wake. */
type ProvisionKind = 'create' | 'restart' | 'wake';
const provisionKind = (from: unknown): ProvisionKind => (from === null || from === undefined ? 'create' : from === 'sleeping' ? 'wake' : 'restart');

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

  // ---- at scale (issue 13) ----------------------------------------------------------------------------------------
  let backend = 'unknown';
  const provisionSeconds = new client.Histogram({
    name: 'molecule_workspace_provision_seconds',
    help: 'From the start of a provisioning (create, restart, wake) to the workspace turning ready, by backend and kind',
    labelNames: ['backend', 'kind'],
    buckets: [0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600],
    registers: [registry],
  });
  const restarts = new client.Counter({
    name: 'molecule_workspace_restarts_total',
    help: 'Workspace restarts (scheduled after the agent died, or asked for), by reason code',
    labelNames: ['reason'],
    registers: [registry],
  });
  for (const reason of RESTART_REASONS) restarts.inc({ reason }, 0);
  const failures = new client.Counter({
    name: 'molecule_workspace_failures_total',
    help: 'Workspaces that ended in failed, by reason code',
    labelNames: ['reason'],
    registers: [registry],
  });
  for (const reason of FAILURE_REASONS) failures.inc({ reason }, 0);
  const a2aProxySeconds = new client.Histogram({
    name: 'molecule_a2a_proxy_seconds',
    help: 'A2A calls forwarded by the proxy: unary until the answer is written, stream until its first bytes; by outcome',
    labelNames: ['mode', 'outcome'],
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
    registers: [registry],
  });
  const a2aInFlightSources = new Set<() => number>();
  new client.Gauge({
    name: 'molecule_a2a_in_flight',
    help: 'A2A requests and streams the proxy is serving now',
    registers: [registry],
    collect() {
      let n = 0;
      for (const f of a2aInFlightSources) n += f();
      this.set(n);
    },
  });
  new client.Gauge({
    name: 'molecule_stalest_heartbeat_age_seconds',
    help: 'Seconds since the oldest last heartbeat among ready workspaces (0 when none is ready)',
    registers: [registry],
    async collect() {
      const oldest = await workspaces.oldestHeartbeat('ready');
      this.set(oldest ? Math.max(0, (Date.now() - Date.parse(oldest)) / 1000) : 0);
    },
  });
  const backendCalls = new client.Histogram({
    name: 'molecule_backend_call_seconds',
    help: "Calls to the backend's API (each attempt), by backend, action and outcome",
    labelNames: ['backend', 'action', 'outcome'],
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
    registers: [registry],
  });
  /** A backend's observer: backends are built before they know of metrics, and never import them. */
  const backendCall =
    (name: string): BackendCallObserver =>
    (action, outcome, seconds) =>
      backendCalls.observe({ backend: name, action, outcome }, seconds);

  /**
   * When each workspace's current provisioning began and why, from every replica's events (the ready one may be
   * published by another replica than the one that started it). Entries end with the next status other than
   * ready; a ready published elsewhere leaves one behind until then (at most one per workspace).
   */
  const provisioning = new Map<string, { kind: ProvisionKind; at: number }>();
  const unsubscribeAll = bus.subscribe((ev) => {
    if (ev.type !== 'workspace.status' || !ev.workspace_id) return;
    if (ev.data.to === 'provisioning') provisioning.set(ev.workspace_id, { kind: provisionKind(ev.data.from), at: Date.parse(ev.at) });
    else if (ev.data.to !== 'ready') provisioning.delete(ev.workspace_id);
  });
  const unsubscribe = bus.subscribePublished((ev) => {
    events.inc({ type: ev.type });
    if (ev.type !== 'workspace.status') return;
    if (ev.data.to === 'sleeping') sleeps.inc();
    else if (ev.data.from === 'sleeping' && ev.data.reason === 'woken by A2A') wakes.inc({ trigger: 'a2a' });
    else if (ev.data.from === 'sleeping' && ev.data.reason === 'wake requested') wakes.inc({ trigger: 'request' });
    const outcome = lifecycleOutcome(ev.data);
    if (outcome) (outcome.kind === 'restart' ? restarts : failures).inc({ reason: outcome.reason });
    // Only provisioning → ready is one: offline → ready (an agent heard from again) and degraded → ready are not.
    // One that began before this replica saw it (it started meanwhile) is not measured rather than guessed.
    if (ev.data.to === 'ready' && ev.data.from === 'provisioning' && ev.workspace_id) {
      const began = provisioning.get(ev.workspace_id);
      provisioning.delete(ev.workspace_id);
      if (began) provisionSeconds.observe({ backend, kind: began.kind }, Math.max(0, (Date.parse(ev.at) - began.at) / 1000));
    }
  });
  return {
    registry,
    httpDuration,
    a2a,
    openStreams,
    wakeToFirstReply,
    a2aProxySeconds,
    /** Counts `inFlight()` into molecule_a2a_in_flight until the returned function is called. */
    watchA2AInFlight(inFlight: () => number): () => void {
      a2aInFlightSources.add(inFlight);
      return () => a2aInFlightSources.delete(inFlight);
    },
    backendCall,
    /** The backend label of the provisioning histogram (the backend is chosen after metrics exist). */
    setBackend(name: string): void {
      backend = name;
    },
    close() {
      unsubscribe();
      unsubscribeAll();
    },
  };
}
export type Metrics = ReturnType<typeof createMetrics>;
