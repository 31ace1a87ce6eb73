/**
 * The agent card as the platform publishes it: the card a workspace's agent registered with, rewritten so that a
 * standard A2A client uses the platform's proxy. Every interface points at the workspace's platform A2A URL, and
 * the security schemes are what the platform accepts (not the agent token, which only the platform holds).
 * Pure functions: the routes give the base URL and whether an admin token is configured.
 */

type Json = Record<string, unknown>;

export const PUBLIC_SCHEME = 'bearer';

export interface PublicCardOptions {
  /** External base of the platform, without a trailing slash (MOLECULE_PUBLIC_URL, or the request's origin). */
  baseUrl: string;
  workspaceId: string;
  /** MOLECULE_ADMIN_TOKEN is set: every call needs a bearer token. Otherwise the platform is open on loopback. */
  adminToken: boolean;
}

export interface PublicInterface {
  url: string;
  protocolBinding: 'JSONRPC';
  protocolVersion: string;
  tenant: string;
}

/** `<base>/workspaces/<id>/a2a`: the URL clients send JSON-RPC to. */
export function platformA2aUrl(baseUrl: string, workspaceId: string): string {
  return `${baseUrl.replace(/\/+$/, '')}/workspaces/${encodeURIComponent(workspaceId)}/a2a`;
}

/** Where the published card is served (the path clients resolve relative to the A2A URL). */
export function platformCardUrl(baseUrl: string, workspaceId: string): string {
  return `${platformA2aUrl(baseUrl, workspaceId)}/.well-known/agent-card.json`;
}

const str = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);
const arr = (v: unknown): unknown[] => (Array.isArray(v) ? v : []);
const obj = (v: unknown): Json => (v && typeof v === 'object' && !Array.isArray(v) ? (v as Json) : {});

/** "0.3.0" → "0.3"; versions are negotiated as Major.Minor. */
function majorMinor(v: string | undefined): string | undefined {
  const m = v?.match(/^(\d+)\.(\d+)/);
  return m ? `${m[1]}.${m[2]}` : undefined;
}

/**
 * The protocol versions the registered card offers over JSON-RPC (the only binding the proxy carries), read from
 * v1 `supportedInterfaces` or the v0.3 `url`/`preferredTransport`/`additionalInterfaces`. A card that says nothing
 * usable gets 1.0 and 0.3, which the proxy passes through.
 */
export function registeredVersions(card: Json): string[] {
  const versions: string[] = [];
  const add = (v: string | undefined) => {
    if (v && !versions.includes(v)) versions.push(v);
  };
  for (const i of arr(card.supportedInterfaces)) {
    const iface = obj(i);
    if ((str(iface.protocolBinding) ?? 'JSONRPC').toUpperCase() === 'JSONRPC') add(majorMinor(str(iface.protocolVersion)));
  }
  if (!versions.length && (str(card.url) || str(card.protocolVersion))) {
    const transports = [str(card.preferredTransport) ?? 'JSONRPC', ...arr(card.additionalInterfaces).map((i) => str(obj(i).transport))];
    if (transports.some((t) => (t ?? '').toUpperCase() === 'JSONRPC')) add(majorMinor(str(card.protocolVersion)) ?? '0.3');
  }
  if (!versions.length) versions.push('1.0', '0.3');
  return versions;
}

export function publicInterfaces(card: Json, opts: PublicCardOptions): PublicInterface[] {
  const url = platformA2aUrl(opts.baseUrl, opts.workspaceId);
  return registeredVersions(card).map((protocolVersion) => ({ url, protocolBinding: 'JSONRPC', protocolVersion, tenant: '' }));
}

function schemeDescription(adminToken: boolean): string {
  return adminToken
    ? 'Send Authorization: Bearer <MOLECULE_ADMIN_TOKEN>, or, from another workspace\'s agent, Bearer <its workspace token> (it may call its parent, children and siblings).'
    : 'No credentials needed on this open loopback platform. A workspace\'s agent may send Bearer <its workspace token> (it may then call its parent, children and siblings).';
}

/** v0.3 security: bearer required with an admin token; on an open platform none is, and a bearer is optional. */
function legacySecurity(adminToken: boolean): Json[] {
  return adminToken ? [{ [PUBLIC_SCHEME]: [] }] : [{}, { [PUBLIC_SCHEME]: [] }];
}

/** True when the card is in the v1 ProtoJSON shape (as our agent registers); otherwise read as v0.3. */
function isV1(card: Json): boolean {
  return Array.isArray(card.supportedInterfaces) && card.url === undefined;
}

/** Skills in the v1 shape. */
function v1Skills(card: Json): Json[] {
  return arr(card.skills).map((s) => {
    const skill = obj(s);
    const { security: _s, securityRequirements: _r, ...rest } = skill;
    return { ...rest, tags: arr(skill.tags) };
  });
}

/** Skills in the v0.3 shape (the same fields; per-skill security dropped, the platform decides). */
function legacySkills(card: Json): Json[] {
  return arr(card.skills).map((s) => {
    const skill = obj(s);
    const out: Json = {
      id: str(skill.id) ?? '',
      name: str(skill.name) ?? '',
      description: str(skill.description) ?? '',
      tags: arr(skill.tags).filter((t) => typeof t === 'string'),
    };
    for (const k of ['examples', 'inputModes', 'outputModes'] as const) {
      const v = arr(skill[k]).filter((t) => typeof t === 'string');
      if (v.length) out[k] = v;
    }
    return out;
  });
}

/**
 * The v1.0 card (ProtoJSON), for clients that ask with `A2A-Version: 1.x`: the registered card's descriptive
 * fields, the platform's interfaces and security. Signatures are dropped: they covered the card as registered.
 */
export function publicCardV1(card: Json, opts: PublicCardOptions): Json {
  const caps = obj(card.capabilities);
  const base: Json = isV1(card)
    ? { ...card }
    : {
        name: card.name,
        description: card.description,
        version: card.version,
        ...(card.provider ? { provider: { organization: obj(card.provider).organization, url: obj(card.provider).url } } : {}),
        ...(card.documentationUrl ? { documentationUrl: card.documentationUrl } : {}),
        ...(card.iconUrl ? { iconUrl: card.iconUrl } : {}),
        defaultInputModes: card.defaultInputModes,
        defaultOutputModes: card.defaultOutputModes,
      };
  delete base.signatures;
  return {
    ...base,
    name: str(card.name) ?? '',
    description: str(card.description) ?? '',
    version: str(card.version) ?? '0.0.0',
    supportedInterfaces: publicInterfaces(card, opts),
    capabilities: {
      streaming: caps.streaming === true,
      pushNotifications: caps.pushNotifications === true,
      ...(Array.isArray(caps.extensions) ? { extensions: caps.extensions } : {}),
      // The extended card would come from the agent with its private address; not offered through the platform.
      extendedAgentCard: false,
    },
    defaultInputModes: arr(card.defaultInputModes).length ? card.defaultInputModes : ['text/plain'],
    defaultOutputModes: arr(card.defaultOutputModes).length ? card.defaultOutputModes : ['text/plain'],
    skills: v1Skills(card),
    securitySchemes: {
      [PUBLIC_SCHEME]: { httpAuthSecurityScheme: { scheme: 'Bearer', description: schemeDescription(opts.adminToken) } },
    },
    securityRequirements: opts.adminToken
      ? [{ schemes: { [PUBLIC_SCHEME]: { list: [] } } }]
      : [{ schemes: {} }, { schemes: { [PUBLIC_SCHEME]: { list: [] } } }],
  };
}

/**
 * The v0.3 card, for header-less (or 0.x) requests: `url`, `preferredTransport`, `protocolVersion` and
 * `additionalInterfaces` (listing the main one too), v0.3 security, and the v1 `supportedInterfaces` embedded for
 * clients that read both — the same hybrid our agent serves.
 */
export function publicCardLegacy(card: Json, opts: PublicCardOptions): Json {
  const interfaces = publicInterfaces(card, opts);
  const legacy = interfaces.filter((i) => i.protocolVersion.startsWith('0.'));
  const primary = legacy[0] ?? interfaces[0]!;
  const caps = obj(card.capabilities);
  const provider = obj(card.provider);
  const out: Json = {
    name: str(card.name) ?? '',
    description: str(card.description) ?? '',
    version: str(card.version) ?? '0.0.0',
    url: primary.url,
    preferredTransport: 'JSONRPC',
    protocolVersion: primary.protocolVersion.startsWith('0.') ? `${primary.protocolVersion}.0` : '0.3.0',
    additionalInterfaces: [{ url: primary.url, transport: 'JSONRPC' }],
    capabilities: { streaming: caps.streaming === true, pushNotifications: caps.pushNotifications === true },
    defaultInputModes: arr(card.defaultInputModes).length ? card.defaultInputModes : ['text/plain'],
    defaultOutputModes: arr(card.defaultOutputModes).length ? card.defaultOutputModes : ['text/plain'],
    skills: legacySkills(card),
    supportsAuthenticatedExtendedCard: false,
    securitySchemes: { [PUBLIC_SCHEME]: { type: 'http', scheme: 'bearer', description: schemeDescription(opts.adminToken) } },
    security: legacySecurity(opts.adminToken),
    supportedInterfaces: interfaces.map(({ url, protocolBinding, protocolVersion }) => ({ url, protocolBinding, protocolVersion })),
  };
  if (typeof provider.organization === 'string' && typeof provider.url === 'string') out.provider = { organization: provider.organization, url: provider.url };
  if (typeof card.documentationUrl === 'string') out.documentationUrl = card.documentationUrl;
  if (typeof card.iconUrl === 'string') out.iconUrl = card.iconUrl;
  return out;
}

/** Header-less or 0.x → the v0.3 (hybrid) card; 1.x → the v1 card. As the agent and the SDK's card handler do. */
export function publicCard(card: Json, opts: PublicCardOptions, requestedVersion: string | undefined): Json {
  const v = requestedVersion?.trim();
  return !v || v.startsWith('0.') ? publicCardLegacy(card, opts) : publicCardV1(card, opts);
}
