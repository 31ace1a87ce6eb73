import { createHash } from 'node:crypto';
import { AgentCard } from '@a2a-js/sdk';
import { duplicateInterfacesForLegacy } from '@a2a-js/sdk/compat/v0_3';
import type { WorkspaceIdentity } from './workspace.js';

export const AGENT_VERSION = '0.1.0';
export const CARD_MAX_AGE_S = 300;

const BEARER_SCHEME = 'bearer';
const BEARER_DESCRIPTION = 'Send Authorization: Bearer <MOLECULE_AGENT_TOKEN>; the platform holds the token and proxies A2A calls.';

interface CardVariant {
  body: string;
  etag: string;
}

export interface CardResponse {
  status: 200 | 304;
  headers: Record<string, string>;
  body?: string;
}

/**
 * The agent card, in the SDK's internal (ts-proto) form for the request handlers and as wire JSON for clients.
 * The object handed to the request handlers is mutated in place by setUrl(): the URL is only known after
 * listening (PORT=0), while the handlers must exist before the routes are registered.
 */
export class AgentCardStore {
  readonly card: AgentCard;
  private v1!: CardVariant;
  private legacy!: CardVariant;
  private readonly lastModified = new Date().toUTCString();

  constructor(workspace: WorkspaceIdentity, url = 'http://localhost/') {
    this.card = {
      name: workspace.name,
      description: workspace.role
        ? workspace.role
        : `Agent of the Molecule workspace "${workspace.name}" (no role set).`,
      supportedInterfaces: [],
      provider: undefined,
      version: AGENT_VERSION,
      capabilities: { streaming: true, pushNotifications: false, extensions: [], extendedAgentCard: false },
      securitySchemes: {
        [BEARER_SCHEME]: {
          scheme: { $case: 'httpAuthSecurityScheme', value: { scheme: 'Bearer', bearerFormat: '', description: BEARER_DESCRIPTION } },
        },
      },
      securityRequirements: [{ schemes: { [BEARER_SCHEME]: { list: [] } } }],
      defaultInputModes: ['text/plain'],
      defaultOutputModes: ['text/plain'],
      skills: [
        {
          id: 'chat',
          name: 'Chat',
          description:
            'Conversation with the workspace agent. It answers questions about its workspace (id, name, role, region, ' +
            'tier, runtime, uptime) and, when a model is configured, anything else.',
          tags: ['chat'],
          examples: ['What region are you running in?', 'Who are you?'],
          inputModes: [],
          outputModes: [],
          securityRequirements: [],
        },
      ],
      signatures: [],
    };
    this.setUrl(url);
  }

  setUrl(url: string): void {
    this.card.supportedInterfaces = duplicateInterfacesForLegacy(
      [{ url, protocolBinding: 'JSONRPC', protocolVersion: '1.0', tenant: '' }],
      ['JSONRPC'],
    );
    this.v1 = variant(this.v1Json());
    this.legacy = variant(this.legacyJson());
  }

  /** v1.0 wire JSON (ProtoJSON: oneofs flattened, empty values dropped). */
  v1Json(): Record<string, unknown> {
    return AgentCard.toJSON(this.card) as Record<string, unknown>;
  }

  /**
   * The v0.3 shape, as the SDK's legacy card route produces it (its converter is not exported): top-level url,
   * protocolVersion and preferredTransport, v0.3 security objects, and the v1 interfaces embedded for clients
   * that understand both.
   */
  legacyJson(): Record<string, unknown> {
    const interfaces = this.card.supportedInterfaces;
    const legacyInterfaces = interfaces.filter((i) => i.protocolVersion.startsWith('0.'));
    const primary = legacyInterfaces[0] ?? interfaces[0];
    const caps = this.card.capabilities;
    return {
      name: this.card.name,
      description: this.card.description,
      version: this.card.version,
      url: primary?.url,
      preferredTransport: primary?.protocolBinding ?? 'JSONRPC',
      protocolVersion: primary?.protocolVersion ?? '0.3',
      capabilities: { streaming: caps?.streaming ?? false, pushNotifications: caps?.pushNotifications ?? false },
      defaultInputModes: [...this.card.defaultInputModes],
      defaultOutputModes: [...this.card.defaultOutputModes],
      skills: this.card.skills.map((s) => ({
        id: s.id,
        name: s.name,
        description: s.description,
        tags: [...s.tags],
        ...(s.examples.length > 0 ? { examples: [...s.examples] } : {}),
      })),
      ...(legacyInterfaces.length > 1
        ? { additionalInterfaces: legacyInterfaces.slice(1).map((i) => ({ url: i.url, transport: i.protocolBinding })) }
        : {}),
      supportsAuthenticatedExtendedCard: caps?.extendedAgentCard ?? false,
      securitySchemes: { [BEARER_SCHEME]: { type: 'http', scheme: 'bearer', description: BEARER_DESCRIPTION } },
      security: [{ [BEARER_SCHEME]: [] }],
      supportedInterfaces: interfaces.map((i) => ({ url: i.url, protocolBinding: i.protocolBinding, protocolVersion: i.protocolVersion })),
    };
  }

  /** Header-less (or 0.x) requests get the v0.3 card, as with the SDK's legacyCompat; anything else the v1 card. */
  respond(requestedVersion: string | undefined, ifNoneMatch: string | undefined): CardResponse {
    const v = requestedVersion?.trim();
    const chosen = !v || v.startsWith('0.') ? this.legacy : this.v1;
    const headers: Record<string, string> = {
      etag: chosen.etag,
      'cache-control': `public, max-age=${CARD_MAX_AGE_S}`,
      'last-modified': this.lastModified,
      vary: 'A2A-Version',
    };
    if (ifNoneMatch && etagMatches(ifNoneMatch, chosen.etag)) return { status: 304, headers };
    return { status: 200, headers: { ...headers, 'content-type': 'application/json; charset=utf-8' }, body: chosen.body };
  }
}

function variant(json: Record<string, unknown>): CardVariant {
  const body = JSON.stringify(json);
  return { body, etag: `W/"${createHash('sha256').update(body).digest('hex').slice(0, 16)}"` };
}

/** If-None-Match uses weak comparison (RFC 9110 §13.1.2) and may list several tags or be `*`. */
export function etagMatches(header: string, etag: string): boolean {
  const strip = (t: string) => t.trim().replace(/^W\//, '');
  const target = strip(etag);
  return header.split(',').some((t) => t.trim() === '*' || strip(t) === target);
}
