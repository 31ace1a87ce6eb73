import os from 'node:os';
import type Docker from 'dockerode';
import { ProvisionError, type AgentNetwork } from '../../core/provisioner.js';
import type { EngineHealth } from './health.js';

/**
 * Where agents in containers reach the platform (a platform on the host; one in a container passes `self`, its
 * own address on the network): the network's gateway, an address of this host that only the
 * host and the containers on that network use. The platform listens there for the agent-facing routes.
 */
export async function agentNetwork(docker: Docker, health: EngineHealth, network: string, self?: { host: string }): Promise<AgentNetwork> {
  let net: { IPAM?: { Config?: { Subnet?: string; Gateway?: string }[] }; Options?: Record<string, string> };
  try {
    net = await docker.getNetwork(network).inspect();
  } catch (e) {
    throw health.failure(e, `inspecting network ${network}`);
  }
  const configs = (net.IPAM?.Config ?? []).filter((c) => c.Subnet && !c.Subnet.includes(':'));
  const subnets = configs.map((c) => c.Subnet!);
  // The default bridge leaves Gateway out of IPAM. Its gateway is the bridge interface's address on this host:
  // listed by the OS once a container is attached (an idle bridge has no carrier and is left out), and otherwise
  // the subnet's first address, which is what the engine gives the bridge unless configured with --bip.
  // The platform in a container on this network: agents reach it there, by name (or IP on the default bridge).
  if (self && subnets.length) return { host: self.host, subnets };
  let gateway = configs.find((c) => c.Gateway)?.Gateway;
  if (!gateway) {
    const ifname = net.Options?.['com.docker.network.bridge.name'];
    gateway = (ifname ? os.networkInterfaces()[ifname] : undefined)?.find((a) => a.family === 'IPv4')?.address ?? firstHost(subnets[0]);
  }
  if (!gateway || !subnets.length) {
    throw new ProvisionError('BACKEND_UNAVAILABLE', `network ${network} has no IPv4 gateway this platform can listen on; set PLATFORM_URL to an address its containers reach`);
  }
  return { host: gateway, subnets };
}

/** 172.17.0.0/16 → 172.17.0.1 */
function firstHost(cidr: string | undefined): string | undefined {
  const m = cidr?.match(/^(\d+)\.(\d+)\.(\d+)\.(\d+)\/(\d+)$/);
  if (!m) return undefined;
  const bits = Number(m[5]);
  const ip = m.slice(1, 5).reduce((n, o) => n * 256 + Number(o), 0);
  const network = bits === 0 ? 0 : Math.floor(ip / 2 ** (32 - bits)) * 2 ** (32 - bits);
  const first = network + 1;
  return [24, 16, 8, 0].map((shift) => Math.floor(first / 2 ** shift) % 256).join('.');
}
