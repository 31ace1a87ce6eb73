import type { InstanceSpec } from '../../src/core/provisioner.js';
import { instanceSpec } from '../support/instance.js';

/** The spec the crash-window tests start agents with; `suffix` tells apart the tokens of separate starters. */
export function crashWindowSpec(workspaceId: string, platformUrl: string, suffix = ''): InstanceSpec {
  return instanceSpec({
    workspaceId,
    name: 'crash-window',
    image: 'unused',
    agent: {
      workspaceRuntime: 'hermes',
      workspaceTier: '1',
      platformUrl,
      workspaceToken: `mws_crash_window${suffix}`,
      agentToken: `mag_crash_window${suffix}`,
    },
  });
}
