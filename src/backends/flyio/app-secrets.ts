import type { InstanceSpec } from '../../core/provisioner.js';
import type { FlyContext } from './context.js';
import { toProvisionError } from './provision-errors.js';
import { ownedSecretWorkspaceTag, splitSecretEnv, workspaceTag } from './secrets.js';

/**
 * Writing and sweeping the workspaces' app secrets through the API (secrets.ts says how they are named). Only
 * secrets with this platform's prefix are ever deleted: other platforms may share the app.
 *
 * Which of our secrets exist is kept here, per workspace: listed once, then followed through our own writes and
 * deletes, and listed again by every sweep. Listing the app's secrets for each launch cost time in the number of
 * workspaces (15,000 names at 5,000 workspaces), so launching all of them cost its square.
 */
export class AppSecrets {
  /** Our secret names by workspace tag; undefined until first listed. */
  private index: Map<string, Set<string>> | undefined;
  private listing: Promise<Map<string, Set<string>>> | undefined;
  /** Workspaces whose secrets changed while a listing was under way: their entries are newer than its answer. */
  private touched: Set<string> | undefined;

  constructor(private readonly ctx: FlyContext) {}

  /**
   * Writes the spec's secret values and deletes this workspace's secrets it no longer has. Returns the app's
   * secrets version after the write (for min_secrets_version), or undefined when nothing was written.
   */
  async write(spec: InstanceSpec, region?: string): Promise<number | undefined> {
    const { client, platformId } = this.ctx;
    const { values } = splitSecretEnv(platformId, spec.workspaceId, spec.env, spec.secretKeys);
    const tag = workspaceTag(spec.workspaceId);
    try {
      let version: number | undefined;
      const names = Object.keys(values);
      if (names.length) {
        // A version is what proves the write happened; an API without one still gets the values referenced.
        version = (await client.setSecrets(values)) ?? 0;
        spec.progress?.('app secrets written', { secrets: names.length, secrets_version: version });
      }
      const held = await this.namesOf(tag);
      const stale = [...held].filter((n) => !Object.hasOwn(values, n));
      this.touch(tag);
      for (const n of names) held.add(n);
      for (const n of stale) {
        await client.deleteSecret(n);
        held.delete(n);
      }
      return version;
    } catch (e) {
      throw toProvisionError(e, this.ctx.app, region);
    }
  }

  /** Deletes the workspace's app secrets (after its machine is destroyed, when the workspace is removed). */
  async forget(workspaceId: string): Promise<void> {
    const tag = workspaceTag(workspaceId);
    try {
      const held = await this.namesOf(tag);
      const names = [...held];
      this.touch(tag);
      for (const n of names) {
        await this.ctx.client.deleteSecret(n);
        held.delete(n);
      }
      if (names.length) this.ctx.logger.info({ workspace_id: workspaceId, secrets: names.length }, 'fly: deleted the workspace app secrets');
    } catch (e) {
      throw toProvisionError(e, this.ctx.app);
    }
  }

  /** Deletes this platform's app secrets whose workspace is not live (and lists them anew for the index). */
  async forgetUnclaimed(liveWorkspaceIds: () => Promise<string[]>): Promise<void> {
    const byTag = await this.list();
    if (!byTag.size) return;
    // Asked only now, so a workspace created while we listed is among the live ones.
    const live = new Set((await liveWorkspaceIds()).map(workspaceTag));
    for (const [tag, names] of byTag) {
      if (live.has(tag)) continue;
      for (const name of [...names]) {
        this.ctx.logger.info({ secret: name }, 'fly: deleting the app secret of a workspace that is gone');
        await this.ctx.client.deleteSecret(name);
        names.delete(name);
      }
    }
  }

  /** The workspace's secret names as the index holds them (a live set: callers update it as they write). */
  private async namesOf(tag: string): Promise<Set<string>> {
    const index = this.index ?? (await this.list());
    let names = index.get(tag);
    if (!names) index.set(tag, (names = new Set()));
    return names;
  }

  private touch(tag: string): void {
    this.touched?.add(tag);
  }

  /** Lists our secrets (one listing at a time) and makes that the index, but for workspaces changed meanwhile. */
  private list(): Promise<Map<string, Set<string>>> {
    this.listing ??= (async () => {
      this.touched = new Set();
      try {
        const fresh = new Map<string, Set<string>>();
        for (const { name } of await this.ctx.client.listSecrets()) {
          const tag = ownedSecretWorkspaceTag(this.ctx.platformId, name);
          if (tag === null) continue;
          let names = fresh.get(tag);
          if (!names) fresh.set(tag, (names = new Set()));
          names.add(name);
        }
        for (const tag of this.touched) {
          const kept = this.index?.get(tag);
          if (kept) fresh.set(tag, kept);
        }
        this.index = fresh;
        return fresh;
      } finally {
        this.touched = undefined;
        this.listing = undefined;
      }
    })();
    return this.listing;
  }
}
