import type { InstanceSpec } from '../../core/provisioner.js';
import type { FlyContext } from './context.js';
import { toProvisionError } from './provision-errors.js';
import { ownedSecretWorkspaceTag, splitSecretEnv, workspaceSecretPrefix, workspaceTag } from './secrets.js';

/**
 * Writing and sweeping the workspaces' app secrets through the API (secrets.ts says how they are named). Only
 * secrets with this platform's prefix are ever deleted: other platforms may share the app.
 */
export class AppSecrets {
  constructor(private readonly ctx: FlyContext) {}

  /**
   * Writes the spec's secret values and deletes this workspace's secrets it no longer has. Returns the app's
   * secrets version after the write (for min_secrets_version), or undefined when nothing was written.
   */
  async write(spec: InstanceSpec, region?: string): Promise<number | undefined> {
    const { client, platformId } = this.ctx;
    const { values } = splitSecretEnv(platformId, spec.workspaceId, spec.env, spec.secretKeys);
    try {
      let version: number | undefined;
      if (Object.keys(values).length) {
        // A version is what proves the write happened; an API without one still gets the values referenced.
        version = (await client.setSecrets(values)) ?? 0;
        spec.progress?.('app secrets written', { secrets: Object.keys(values).length, secrets_version: version });
      }
      const stale = (await this.namesOf(spec.workspaceId)).filter((n) => !Object.hasOwn(values, n));
      for (const n of stale) await client.deleteSecret(n);
      return version;
    } catch (e) {
      throw toProvisionError(e, this.ctx.app, region);
    }
  }

  /** Deletes the workspace's app secrets (after its machine is destroyed, when the workspace is removed). */
  async forget(workspaceId: string): Promise<void> {
    try {
      const names = await this.namesOf(workspaceId);
      for (const n of names) await this.ctx.client.deleteSecret(n);
      if (names.length) this.ctx.logger.info({ workspace_id: workspaceId, secrets: names.length }, 'fly: deleted the workspace app secrets');
    } catch (e) {
      throw toProvisionError(e, this.ctx.app);
    }
  }

  /** Deletes this platform's app secrets whose workspace is not live. */
  async forgetUnclaimed(liveWorkspaceIds: () => Promise<string[]>): Promise<void> {
    const { client, platformId } = this.ctx;
    const ours = (await client.listSecrets())
      .map((x) => ({ name: x.name, tag: ownedSecretWorkspaceTag(platformId, x.name) }))
      .filter((x): x is { name: string; tag: string } => x.tag !== null);
    if (!ours.length) return;
    // Asked only now, so a workspace created while we listed is among the live ones.
    const live = new Set((await liveWorkspaceIds()).map(workspaceTag));
    for (const x of ours) {
      if (live.has(x.tag)) continue;
      this.ctx.logger.info({ secret: x.name }, 'fly: deleting the app secret of a workspace that is gone');
      await client.deleteSecret(x.name);
    }
  }

  private async namesOf(workspaceId: string): Promise<string[]> {
    const prefix = workspaceSecretPrefix(this.ctx.platformId, workspaceId);
    return (await this.ctx.client.listSecrets()).map((x) => x.name).filter((n) => n.startsWith(prefix));
  }
}
