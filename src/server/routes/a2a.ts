import type { FastifyPluginAsync } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import type { AppDeps } from '../app.js';
import type { A2AProxy } from '../a2a/proxy.js';
import { IdParams } from '../schemas.js';

/**
 * The A2A proxy's place in Fastify: its OpenAPI description, and the way in for requests that reach the app by
 * `inject` or `routing` rather than through its server (where app.ts hands them to the proxy before Fastify).
 * Either way the same A2AProxy serves them.
 */
export function a2aRoutes(deps: Pick<AppDeps, 'config'> & { proxy: A2AProxy }): FastifyPluginAsync {
  return async (plain) => {
    // Raw bytes: a JSON-RPC parse error must be answered as JSON-RPC, by the proxy.
    plain.removeAllContentTypeParsers();
    // Twice the proxy's own limit, so that it is the proxy that refuses (as JSON-RPC), with Fastify as a backstop.
    plain.addContentTypeParser('*', { parseAs: 'buffer', bodyLimit: deps.config.a2a.maxBodyBytes * 2 }, (_req, body, done) => done(null, body));
    const app = plain.withTypeProvider<ZodTypeProvider>();
    app.post(
      '/workspaces/:id/a2a',
      {
        bodyLimit: deps.config.a2a.maxBodyBytes * 2,
        schema: {
          tags: ['a2a'],
          summary: 'A2A JSON-RPC proxy (v0.3 and v1.0 methods); a bare Message is wrapped into message/send',
          params: IdParams,
          description:
            'JSON-RPC errors, the platform\'s own included, are answered with HTTP 200 and the reason in error.data.code. Authentication (401) and rate limiting (429) come first, as REST errors.',
        },
        // The proxy checks the id itself (and answers JSON-RPC); the schema only documents it.
        validatorCompiler: () => () => true,
      },
      (req, reply) => {
        reply.hijack();
        deps.proxy.handle(req.raw, reply.raw, Buffer.isBuffer(req.body) ? req.body : Buffer.alloc(0));
      },
    );
  };
}
