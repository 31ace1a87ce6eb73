import { describe, expect, it } from 'vitest';
import { ACTIONS, canTransition, TRANSITIONS } from '../../src/core/status.js';
import { WORKSPACE_STATUSES } from '../../src/core/types.js';

describe('status machine', () => {
  it('defines transitions for every status and only to known statuses', () => {
    expect(Object.keys(TRANSITIONS).sort()).toEqual([...WORKSPACE_STATUSES].sort());
    for (const targets of Object.values(TRANSITIONS)) for (const t of targets) expect(WORKSPACE_STATUSES).toContain(t);
  });

  it('follows the design: register, failures, recovery, pause and delete', () => {
    expect(canTransition('provisioning', 'ready')).toBe(true);
    expect(canTransition('provisioning', 'failed')).toBe(true);
    expect(canTransition('ready', 'offline')).toBe(true);
    expect(canTransition('offline', 'provisioning')).toBe(true);
    expect(canTransition('offline', 'failed')).toBe(true);
    expect(canTransition('failed', 'provisioning')).toBe(true);
    expect(canTransition('paused', 'provisioning')).toBe(true);
    expect(canTransition('removing', 'removed')).toBe(true);
  });

  it('never leaves removed, and cannot skip removing', () => {
    for (const s of WORKSPACE_STATUSES) expect(canTransition('removed', s)).toBe(false);
    for (const s of WORKSPACE_STATUSES.filter((x) => x !== 'removing')) expect(canTransition(s, 'removed')).toBe(false);
  });

  it('cannot become ready without passing through provisioning from failed or paused', () => {
    expect(canTransition('failed', 'ready')).toBe(false);
    expect(canTransition('paused', 'ready')).toBe(false);
  });

  it('allows every user action only from statuses that can reach its target', () => {
    for (const s of ACTIONS.restart) expect(canTransition(s, 'provisioning')).toBe(true);
    for (const s of ACTIONS.pause) expect(canTransition(s, 'paused')).toBe(true);
    for (const s of ACTIONS.resume) expect(canTransition(s, 'provisioning')).toBe(true);
    for (const s of ACTIONS.delete) expect(canTransition(s, 'removing')).toBe(true);
    expect((Object.keys(TRANSITIONS) as (keyof typeof TRANSITIONS)[]).filter((s) => canTransition(s, 'removed'))).toEqual(['removing']);
  });
});
