import fs from 'node:fs';
import path from 'node:path';
import fastifyStatic from '@fastify/static';
import type { FastifyPluginAsync } from 'fastify';
import { UI_DIST } from '../ui/paths.js';

const ASSETS_PREFIX = '/assets/';
/** Files at the top of the build besides index.html (Vite copies src/ui/web/public there). */
const TOP_FILES = ['favicon.svg'];

/**
 * Pages, scripts and styles carry no data, and the sign-in page must load before anyone has a token: the admin
 * token guards the API, not these.
 */
export function isUiPath(urlPath: string): boolean {
  return urlPath === '/' || urlPath.startsWith(ASSETS_PREFIX) || TOP_FILES.includes(urlPath.slice(1));
}

const NOT_BUILT = [
  'The Molecule web UI has not been built.',
  '',
  'Build it with `npm run build:ui` (`npm start` does this for you), then reload this page.',
  'The API is served here all the same: see /docs.',
  '',
].join('\n');

/**
 * The web UI: index.html at `/` (its pages are hash routes, so they never collide with API paths) and Vite's
 * content-hashed files under /assets/. Whether the build exists is checked per request, so building while the
 * platform runs is enough.
 */
export const uiRoutes: FastifyPluginAsync<{ dir?: string }> = async (app, opts) => {
  const dir = opts.dir ?? UI_DIST;
  const index = path.join(dir, 'index.html');
  await app.register(fastifyStatic, {
    root: path.join(dir, 'assets'),
    prefix: ASSETS_PREFIX,
    suppressWarning: true,
    index: false,
    // File names carry a content hash: a changed file is a new name.
    immutable: true,
    maxAge: '365d',
  });

  app.get('/', { schema: { hide: true } }, async (_req, reply) => {
    if (!fs.existsSync(index)) {
      return reply.code(503).type('text/plain; charset=utf-8').header('cache-control', 'no-store').send(NOT_BUILT);
    }
    // Always revalidated, so a rebuilt UI is picked up on the next load.
    return reply.header('cache-control', 'no-cache').sendFile('index.html', dir, { cacheControl: false });
  });

  for (const file of TOP_FILES) {
    app.get(`/${file}`, { schema: { hide: true } }, async (_req, reply) => {
      if (!fs.existsSync(path.join(dir, file))) {
        return reply.code(404).send({ error: 'the web UI has not been built (npm run build:ui)', code: 'ui_not_built' });
      }
      return reply.sendFile(file, dir, { maxAge: 86_400_000, immutable: false });
    });
  }
};
