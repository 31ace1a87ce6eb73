import type { FastifyPluginAsync } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import type { AppDeps } from '../app.js';
import { validatesSpecs } from '../../core/provisioner.js';
import { RUNTIMES } from '../../core/runtimes.js';
import { ACTIONS } from '../../core/status.js';
import { TIERS, WORKSPACE_STATUSES, type Tier } from '../../core/types.js';
import { CreateWorkspaceBody } from '../schemas.js';

export const MetaView = z.object({
  version: z.string(),
  backend: z.object({
    name: z.string(),
    default_region: z.string(),
    regions: z
      .array(z.object({ code: z.string(), name: z.string() }))
      .nullable()
      .describe('regions a workspace may ask for; null when the backend takes any region code'),
  }),
  runtimes: z.array(z.string()),
  default_runtime: z.string(),
  tiers: z.array(z.object({ tier: z.number().int(), memory_mb: z.number().int(), cpus: z.number().int() })),
  default_tier: z.number().int(),
  statuses: z.array(z.enum(WORKSPACE_STATUSES)),
  actions: z
    .record(z.enum(Object.keys(ACTIONS) as [keyof typeof ACTIONS]), z.array(z.enum(WORKSPACE_STATUSES)))
    .describe('user actions (POST /workspaces/:id/<action>, DELETE for delete) and the statuses each is allowed from'),
});

/** What clients (the web UI, the CLI) need to offer choices the platform accepts, so none of it is hard-coded there. */
export function metaRoutes(deps: Pick<AppDeps, 'provisioner' | 'version'>): FastifyPluginAsync {
  return async (plain) => {
    const app = plain.withTypeProvider<ZodTypeProvider>();

    app.get('/meta', { schema: { tags: ['platform'], summary: 'Runtimes, tiers and regions this platform accepts', response: { 200: MetaView } } }, async () => {
      const regions = validatesSpecs(deps.provisioner) ? deps.provisioner.regions : undefined;
      return {
        version: deps.version,
        backend: {
          name: deps.provisioner.name,
          default_region: deps.provisioner.defaultRegion,
          regions: regions ? Object.entries(regions).map(([code, name]) => ({ code, name })) : null,
        },
        runtimes: [...RUNTIMES],
        // The create schema's defaults, so a client's preselection is what an omitted field would get.
        default_runtime: CreateWorkspaceBody.shape.runtime.parse(undefined),
        tiers: (Object.keys(TIERS) as unknown as Tier[]).map((t) => ({ tier: Number(t), memory_mb: TIERS[t].memoryMb, cpus: TIERS[t].cpus })),
        default_tier: CreateWorkspaceBody.shape.tier.parse(undefined),
        statuses: [...WORKSPACE_STATUSES],
        actions: Object.fromEntries(Object.entries(ACTIONS).map(([a, from]) => [a, [...from]])) as Record<keyof typeof ACTIONS, (typeof WORKSPACE_STATUSES)[number][]>,
      };
    });
  };
}
