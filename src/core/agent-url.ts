import { isIP } from 'node:net';
import type { Workspace } from './types.js';

/**
 * Is the URL an agent reports on register one its backend vouches for? Register must not let a token holder
 * plant an arbitrary address (another service, the cloud metadata endpoint) into the platform's records.
 *
 * Backend-agnostic: it compares with what the Provisioner returned for the instance (InstanceHandle), never with
 * backend names:
 * - the handle's URL, host and port both (a loopback or proxy address is shared, so its port matters);
 * - an address that belongs to the instance alone, on any port: a host or IP the handle's details name under an
 *   address-like key (`private_ip`, `ip`, `host`, `hostname`, `name` …), or the instance id and its 12-character
 *   short form (container hostnames);
 * - or a URL under one of the operator's `MOLECULE_EXTERNAL_AGENT_URLS`.
 * Returns null when accepted, else the reason.
 */
export function agentUrlProblem(
  reported: string,
  instance: { instanceId: string | null; handle: Workspace['instance'] },
  allowList: readonly string[],
): string | null {
  let url: URL;
  try {
    url = new URL(reported);
  } catch {
    return `the reported url ${JSON.stringify(reported.slice(0, 200))} is not an absolute URL`;
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return `the reported url must be http or https, not ${url.protocol}`;
  if (url.username || url.password) return 'the reported url must not carry credentials';

  const bare = `${url.origin}${url.pathname.replace(/\/+$/, '')}`;
  if (allowList.some((a) => bare === a || bare.startsWith(`${a}/`))) return null;

  const { instanceId, handle } = instance;
  if (!instanceId || !handle) return 'no instance is recorded for this workspace yet';
  const host = normalHost(url.hostname);
  if (handle.url) {
    const known = new URL(handle.url);
    if (host === normalHost(known.hostname) && effectivePort(url) === effectivePort(known)) return null;
  }
  if (ownAddresses(instanceId, handle.details).has(host)) return null;
  return `the reported url ${url.origin} is not an address of this workspace's instance${handle.url ? ` (the backend reaches it at ${new URL(handle.url).origin})` : ''}; agents outside a backend must be listed in MOLECULE_EXTERNAL_AGENT_URLS`;
}

const ADDRESS_KEY = /(^|_)(ip|ips|ipaddress|ip_address|address|addresses|addr|host|hostname|name)$/i;
const HOSTLIKE = /^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$/i;

function ownAddresses(instanceId: string, details: Record<string, unknown>): Set<string> {
  const out = new Set<string>();
  const add = (v: unknown) => {
    if (typeof v !== 'string' || !v) return;
    if (isIP(v) || HOSTLIKE.test(v)) out.add(normalHost(v));
  };
  add(instanceId);
  add(instanceId.slice(0, 12));
  for (const [k, v] of Object.entries(details ?? {})) {
    if (!ADDRESS_KEY.test(k)) continue;
    if (Array.isArray(v)) v.forEach(add);
    else add(v);
  }
  return out;
}

/** Lower case, IPv6 without brackets and in its canonical short form. */
function normalHost(h: string): string {
  const bare = h.replace(/^\[|\]$/g, '').toLowerCase();
  if (isIP(bare) === 6) return new URL(`http://[${bare}]/`).hostname.replace(/^\[|\]$/g, '');
  return bare;
}

function effectivePort(u: URL): string {
  return u.port || (u.protocol === 'https:' ? '443' : '80');
}
