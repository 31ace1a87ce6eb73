import type { SecretStore, WorkspaceStore } from './ports.js';
import type { Sealer } from './crypto.js';
import { ApiError } from './errors.js';
import type { EventBus } from './events.js';
import type { Workspace } from './types.js';

/** Sealed with its scope and name as associated data: a sealed value moved to another name does not open. */
export const secretAad = (scope: string, key: string) => `secret:${scope}:${key}`;

/** `global`, or a workspace id. */
export type SecretScope = 'global' | (string & {});

export interface SecretSummary {
  key: string;
  created_at: string;
  updated_at: string;
}

export interface SecretServiceDeps {
  secrets: SecretStore;
  workspaces: WorkspaceStore;
  sealer: Sealer;
  bus: EventBus;
  /** The live workspace (404 unknown, 410 removed), for workspace scopes. */
  liveWorkspace: (id: string) => Promise<Workspace>;
}

/**
 * Secrets are write-only: values go in sealed, only names and times come out. A change marks the instances that
 * would see it `needs_restart` (they get secrets as env when they start) and is announced as `secret.changed`.
 */
export class SecretService {
  constructor(private readonly d: SecretServiceDeps) {}

  async list(scope: SecretScope): Promise<SecretSummary[]> {
    await this.checkScope(scope);
    return (await this.d.secrets.list(scope)).map((s) => ({ key: s.key, created_at: s.createdAt, updated_at: s.updatedAt }));
  }

  async put(scope: SecretScope, key: string, value: string): Promise<{ key: string; result: 'created' | 'updated' }> {
    await this.checkScope(scope);
    const result = await this.d.secrets.put(scope, key, this.d.sealer.seal(value, secretAad(scope, key)));
    await this.changed(scope, key, result);
    return { key, result };
  }

  async delete(scope: SecretScope, key: string): Promise<void> {
    await this.checkScope(scope);
    if (!(await this.d.secrets.delete(scope, key))) throw new ApiError(404, 'secret_not_found', `no secret named ${key}`);
    await this.changed(scope, key, 'deleted');
  }

  private async checkScope(scope: SecretScope): Promise<void> {
    if (scope !== 'global') await this.d.liveWorkspace(scope);
  }

  private async changed(scope: SecretScope, key: string, change: string): Promise<void> {
    const affected = scope === 'global' ? await this.d.workspaces.list({}) : [await this.d.liveWorkspace(scope)];
    for (const ws of affected) {
      if (ws.instanceId && !ws.needsRestart && ws.status !== 'removing') await this.d.workspaces.update(ws.id, { needsRestart: true });
    }
    await this.d.bus.publish('secret.changed', scope === 'global' ? null : scope, { scope, key, change });
  }
}
