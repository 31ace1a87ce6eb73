import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import { once } from 'node:events';
import type { Logger } from 'pino';
import { agentCommand } from '../../agent/launch.js';
import { TIERS } from '../../core/types.js';
import { ProvisionError, type InstanceSpec } from '../../core/provisioner.js';
import { OWNER_ENV } from './agents.js';
import { createCgroups, type CgroupSupport } from './cgroups.js';

/** Host environment a child may see; everything else comes from the spec. */
const PASS_ENV = ['PATH', 'HOME', 'LANG', 'LC_ALL', 'TZ', 'TMPDIR', 'SSL_CERT_FILE', 'NODE_EXTRA_CA_CERTS'];

export interface LaunchOptions {
  instanceId: string;
  spec: InstanceSpec;
  port: number;
  logFile: string;
  /** The agent's working directory. */
  cwd: string;
  ownerId: string;
  cgroups: CgroupSupport;
  logger: Logger;
  command?: (heapMb: number) => { command: string; args: string[] };
}

/**
 * Spawns the agent detached (its own process group, so it outlives the platform and is signalled as a group),
 * its output appended to the log file, inside the tier's cgroups where they can be made. Resolves once it runs.
 */
export async function launchAgent(o: LaunchOptions): Promise<ChildProcess> {
  const { spec, instanceId, port } = o;
  const { memoryMb, cpus } = TIERS[spec.tier];
  const heapMb = Math.floor(memoryMb * 0.75);
  const cmd = (o.command ?? ((h) => agentCommand({ heapMb: h })))(heapMb);
  const out = fs.openSync(o.logFile, 'a');
  fs.writeSync(out, `[molecule] ${new Date().toISOString()} starting ${spec.runtime} agent on 127.0.0.1:${port} (tier ${spec.tier})\n`);

  let command = cmd.command;
  let args = cmd.args;
  let procsFiles: string[] = [];
  try {
    procsFiles = createCgroups(o.cgroups, instanceId, memoryMb, cpus);
  } catch (e) {
    o.logger.warn({ err: (e as Error).message, instanceId }, 'could not create cgroups; starting without them');
  }
  if (procsFiles.length) {
    // Join the cgroups before exec, so the limits hold from the agent's first instruction.
    const joins = procsFiles.map((_, i) => `echo $$ > "$${i + 1}"`).join(' && ');
    args = ['-c', `${joins} && shift ${procsFiles.length} && exec "$@"`, 'molecule-cgroup-join', ...procsFiles, command, ...args];
    command = '/bin/sh';
  }

  const env: Record<string, string> = {};
  for (const k of PASS_ENV) if (process.env[k]) env[k] = process.env[k]!;
  Object.assign(env, spec.env, { PORT: String(port), AGENT_HOST: '127.0.0.1', [OWNER_ENV]: o.ownerId });

  const child = spawn(command, args, { env, stdio: ['ignore', out, out], detached: true, cwd: o.cwd });
  fs.closeSync(out);
  try {
    await Promise.race([once(child, 'spawn'), once(child, 'error').then(([e]) => Promise.reject(e))]);
  } catch (e) {
    throw new ProvisionError('START_FAILED', `could not start the agent process: ${(e as Error).message}`);
  }
  child.unref();
  return child;
}
