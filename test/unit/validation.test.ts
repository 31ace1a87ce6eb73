import { describe, expect, it } from 'vitest';
import { CreateWorkspaceBody, ListQuery, PatchWorkspaceBody, WorkspaceId } from '../../src/server/schemas.js';

const messages = (r: { success: boolean; error?: { issues: { message: string; path: PropertyKey[] }[] } }) =>
  r.error?.issues.map((i) => `${i.path.join('.')}: ${i.message}`) ?? [];

describe('workspace create validation', () => {
  it('accepts the seed body and fills defaults', () => {
    const r = CreateWorkspaceBody.parse({ name: 'fly-worker', role: 'Fly-provisioned inference worker', runtime: 'hermes', tier: 2 });
    expect(r).toMatchObject({ name: 'fly-worker', runtime: 'hermes', tier: 2 });
    expect(CreateWorkspaceBody.parse({ name: 'x' })).toMatchObject({ runtime: 'hermes', tier: 2 });
  });

  it('rejects names that are empty, blank, too long or hold control characters', () => {
    for (const name of ['', '   ', 'a'.repeat(256), 'bad\nname', 'nul\u0000', 'del\u007f']) {
      expect(CreateWorkspaceBody.safeParse({ name }).success, JSON.stringify(name)).toBe(false);
    }
    expect(CreateWorkspaceBody.safeParse({ name: 'a'.repeat(255) }).success).toBe(true);
    expect(CreateWorkspaceBody.safeParse({ name: 'ünïcödé 名前' }).success).toBe(true);
  });

  it('accepts tiers 1–4 only, as integers', () => {
    for (const tier of [1, 2, 3, 4]) expect(CreateWorkspaceBody.safeParse({ name: 'x', tier }).success).toBe(true);
    for (const tier of [0, 5, 2.5, '2', null]) {
      const r = CreateWorkspaceBody.safeParse({ name: 'x', tier });
      expect(r.success, String(tier)).toBe(false);
      expect(messages(r).join()).toContain('tier: must be an integer from 1 to 4');
    }
  });

  it('names the valid runtimes when given an unknown one', () => {
    const r = CreateWorkspaceBody.safeParse({ name: 'x', runtime: 'langchain' });
    expect(messages(r)).toEqual(['runtime: unknown runtime "langchain"; valid runtimes: hermes']);
  });

  it('rejects unknown fields rather than ignoring a typo', () => {
    const r = CreateWorkspaceBody.safeParse({ name: 'x', teir: 3 });
    expect(messages(r).join()).toContain('teir');
  });

  it('rejects env keys that are malformed or reserved by the platform', () => {
    for (const key of ['1ABC', 'A-B', 'WORKSPACE_ID', 'PLATFORM_URL', 'PORT', 'MOLECULE_AGENT_TOKEN', 'FLY_REGION', 'LD_PRELOAD', 'path']) {
      expect(CreateWorkspaceBody.safeParse({ name: 'x', env: { [key]: 'v' } }).success, key).toBe(false);
      expect(CreateWorkspaceBody.safeParse({ name: 'x', secrets: { [key]: 'v' } }).success, key).toBe(false);
    }
    expect(CreateWorkspaceBody.safeParse({ name: 'x', env: { LOG_LEVEL: 'debug' }, secrets: { OPENAI_API_KEY: 'sk' } }).success).toBe(true);
  });

  it('validates region codes and parent ids', () => {
    expect(CreateWorkspaceBody.safeParse({ name: 'x', region: 'ord' }).success).toBe(true);
    expect(CreateWorkspaceBody.safeParse({ name: 'x', region: 'ORD; rm -rf' }).success).toBe(false);
    expect(CreateWorkspaceBody.safeParse({ name: 'x', parent_id: 'not-a-uuid' }).success).toBe(false);
  });
});

describe('other inputs', () => {
  it('needs something to patch', () => {
    expect(PatchWorkspaceBody.safeParse({}).success).toBe(false);
    expect(PatchWorkspaceBody.safeParse({ tier: 3 }).success).toBe(true);
    expect(PatchWorkspaceBody.safeParse({ runtime: 'hermes' }).success).toBe(false);
  });

  it('parses comma-separated status filters and rejects unknown statuses', () => {
    expect(ListQuery.parse({ status: 'ready,failed' }).status).toEqual(['ready', 'failed']);
    expect(ListQuery.safeParse({ status: 'ready,asleep' }).success).toBe(false);
  });

  it('accepts UUIDs only as ids', () => {
    expect(WorkspaceId.safeParse('3f2a0c1e-8b7d-4c2a-9e1f-0a1b2c3d4e5f').success).toBe(true);
    expect(WorkspaceId.safeParse('3f2a0c1e').success).toBe(false);
  });
});
