import { instanceName, loadPlatformId } from '../naming.js';

export const LABELS = {
  managed: 'molecule.managed',
  workspaceId: 'molecule.workspace_id',
  platformId: 'molecule.platform_id',
  runtime: 'molecule.runtime',
  tier: 'molecule.tier',
} as const;

/** `ws-<first 12 hex of the workspace id>`: the container's name (its instance id) and hostname. */
export const containerName = instanceName;

/** The workspace's named volume, mounted at /workspace; it outlives restarts and goes with the workspace. */
export function volumeName(instanceId: string): string {
  return `${instanceId}-data`;
}

/** This platform's id on the engine (label `molecule.platform_id`), kept in `<dataDir>/docker-platform-id`. */
export function loadDockerPlatformId(dataDir: string): string {
  return loadPlatformId(dataDir, 'docker-platform-id');
}

/** The label selector of this platform's containers and volumes: two platforms on one engine never touch each other's. */
export function ownedBy(platformId: string): string {
  return `${LABELS.platformId}=${platformId}`;
}
