import { describe, expect, it } from 'vitest';
import { engineAction } from '../../src/backends/docker/engine.js';
import { httpCallOutcome } from '../../src/core/backend-calls.js';
import { lifecycleOutcome, reasonCode } from '../../src/core/reason-codes.js';

describe('metric reason codes', () => {
  it('maps the status reasons core writes to a short code', () => {
    const cases: [string, string][] = [
      ['instance failed: exited with code 3; restarting in 0.2 s', 'instance_exited'],
      ['instance stopped: no reason given; restarting in 0.4 s', 'instance_exited'],
      ['found the instance failed (process 123 is no longer running); restarting in 1.0 s', 'instance_exited'],
      ['instance gone: no process record; restarting in 0.2 s', 'instance_gone'],
      ['no heartbeat for 4 s and /healthz did not answer 3 probes (backend: running); restarting in 0.2 s', 'heartbeat_lost'],
      ['no heartbeat for 9 s and the backend reports the instance stopped', 'heartbeat_lost'],
      ['crash loop: the agent stopped 4 times within 10 min; last: instance failed: exited with code 3', 'crash_loop'],
      ['AGENT_NEVER_REGISTERED: the agent did not register within 600 s; see GET /workspaces/x/logs', 'provision_timeout'],
      ['BACKEND_UNAVAILABLE: the engine is away; restarting in 0.4 s', 'backend_unavailable'],
      ['START_FAILED: the machine did not start', 'backend_start_failed'],
      ['IMAGE_NOT_FOUND: no such image', 'backend_image_not_found'],
      ['backend error: socket hang up', 'backend_error'],
      ['could not prepare the instance: no key', 'prepare_failed'],
      ['restart requested', 'requested'],
      // Unknown wording and unknown codes never make a new label.
      ['SOMETHING_NEW: whatever', 'other'],
      ['the moon is full', 'other'],
      ['', 'other'],
    ];
    for (const [reason, code] of cases) expect([reason, reasonCode(reason)]).toEqual([reason, code]);
  });

  it('tells restarts and failures from other status changes', () => {
    expect(lifecycleOutcome({ from: 'ready', to: 'offline', reason: 'instance failed: exited with code 1; restarting in 0.2 s' })).toEqual({ kind: 'restart', reason: 'instance_exited' });
    expect(lifecycleOutcome({ from: 'ready', to: 'provisioning', reason: 'restart requested', action: 'restart' })).toEqual({ kind: 'restart', reason: 'requested' });
    expect(lifecycleOutcome({ from: 'offline', to: 'failed', reason: 'crash loop: the agent stopped 3 times within 10 min; last: x' })).toEqual({ kind: 'failure', reason: 'crash_loop' });
    // The offline step of a crash loop (no restart follows), the restart itself, a wake, a resume: none counted.
    expect(lifecycleOutcome({ from: 'ready', to: 'offline', reason: 'instance failed: exited with code 1' })).toBeNull();
    expect(lifecycleOutcome({ from: 'offline', to: 'provisioning', reason: 'automatic restart (attempt 1)' })).toBeNull();
    expect(lifecycleOutcome({ from: 'sleeping', to: 'provisioning', reason: 'woken by A2A', action: 'wake' })).toBeNull();
    expect(lifecycleOutcome({ from: 'paused', to: 'provisioning', reason: 'resume requested', action: 'resume' })).toBeNull();
    expect(lifecycleOutcome({ from: 'provisioning', to: 'ready', reason: 'agent registered' })).toBeNull();
  });

  it('names backend calls and their outcomes from fixed sets', () => {
    expect([200, 0, 404, 408, 409, 429, 400, 503].map(httpCallOutcome)).toEqual(['ok', 'network', 'not_found', 'timeout', 'conflict', 'rate_limited', 'client_error', 'server_error']);
    expect(engineAction('POST', '/containers/create?')).toBe('containers_create');
    expect(engineAction('POST', '/containers/0123abcd/start?')).toBe('containers_start');
    expect(engineAction('GET', '/containers/0123abcd/json')).toBe('containers_inspect');
    expect(engineAction('GET', '/containers/json?')).toBe('containers_list');
    expect(engineAction('DELETE', '/containers/0123abcd?')).toBe('containers_remove');
    expect(engineAction('GET', '/images/ghcr.io/molecule-ai/workspace-hermes:latest/json')).toBe('images_inspect');
    expect(engineAction('POST', '/networks/bridge/connect')).toBe('networks_connect');
    expect(engineAction('GET', '/_ping')).toBe('ping');
    expect(engineAction('GET', '/v1.43/events?')).toBe('events');
    expect(engineAction('GET', '/plugins')).toBe('other');
  });
});
