import fs from 'node:fs';
import os from 'node:os';
import type Docker from 'dockerode';
import { statusOf } from './engine.js';

/**
 * Where the platform runs relative to the engine it drives, and so how it reaches agents:
 * - `published`: on the engine's host. Each agent's port 8000 is published on an ephemeral 127.0.0.1 port.
 * - `network`: in a container of that engine (the socket mounted). The host's 127.0.0.1 is not the platform's, so
 *   nothing is published: agents join `network` with the platform's container and are reached by container name
 *   (by IP on the default `bridge`, which has no name resolution).
 */
export interface Placement {
  mode: 'published' | 'network';
  network: string;
  /** The platform's own container, when it is one of this engine's. */
  self?: { id: string; name: string; ip: string | null };
  why: string;
}

const DEFAULT_NETWORKS = new Set(['bridge', 'host', 'none']);

/** A quick local hint first (most hosts are not containers); only then is the engine asked about our hostname. */
export function looksContainerised(): boolean {
  if (fs.existsSync('/.dockerenv') || fs.existsSync('/run/.containerenv')) return true;
  try {
    return /\/(docker|containerd|kubepods|libpod)[/-]/.test(fs.readFileSync('/proc/1/cgroup', 'utf8'));
  } catch {
    return false;
  }
}

export async function detectPlacement(
  docker: Docker,
  opts: { configured: 'auto' | 'published' | 'network'; network?: string; hostname?: string; log?: (msg: string) => void },
): Promise<Placement> {
  if (opts.configured === 'published') {
    return { mode: 'published', network: opts.network ?? 'bridge', why: 'MOLECULE_DOCKER_AGENT_ADDRESS=published' };
  }
  // Docker names a container's hostname after its id (unless --hostname): look that up on this engine. A process
  // in some other container (or in a container that is not this engine's) is, for this engine, on the host.
  let self: Docker.ContainerInspectInfo | undefined;
  if (opts.configured === 'network' || looksContainerised()) {
    try {
      self = await docker.getContainer(opts.hostname ?? os.hostname()).inspect();
    } catch (e) {
      if (statusOf(e) !== 404 && statusOf(e) !== 400) throw e;
    }
    if (self && !self.State?.Running) self = undefined;
  }
  if (!self) {
    if (opts.configured === 'network') {
      return { mode: 'network', network: opts.network ?? 'bridge', why: 'MOLECULE_DOCKER_AGENT_ADDRESS=network (the platform is not a container of this engine: it must reach that network itself)' };
    }
    return { mode: 'published', network: opts.network ?? 'bridge', why: 'the platform runs on the engine\'s host' };
  }
  const name = self.Name.replace(/^\//, '');
  const joined = Object.keys(self.NetworkSettings?.Networks ?? {});
  const network = opts.network ?? joined.find((n) => !DEFAULT_NETWORKS.has(n)) ?? 'bridge';
  if (!joined.includes(network)) {
    // Agents and the platform must share a network: join it (made here when missing).
    try {
      await docker.createNetwork({ Name: network, Driver: 'bridge', CheckDuplicate: true, Labels: { 'molecule.managed': 'true' } });
      opts.log?.(`created network ${network} for agents and the platform`);
    } catch (e) {
      if (statusOf(e) !== 409) throw e;
    }
    await docker.getNetwork(network).connect({ Container: self.Id });
    opts.log?.(`connected the platform's container ${name} to network ${network}`);
    self = await docker.getContainer(self.Id).inspect();
  }
  const ip = self.NetworkSettings?.Networks?.[network]?.IPAddress || null;
  return {
    mode: 'network',
    network,
    self: { id: self.Id, name, ip },
    why: `the platform runs in this engine's container ${name}: agents join network ${network} and are reached by ${network === 'bridge' ? 'IP' : 'container name'}`,
  };
}

/** How the platform (or another container on the network) addresses a container there. */
export function addressOn(network: string, name: string, ip: string | null | undefined): string {
  return network === 'bridge' && ip ? ip : name;
}
