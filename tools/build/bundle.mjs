// Bundles the platform (src/main.ts → dist/main.js) and the CLI (src/cli/main.ts → dist/cli.js) with esbuild.
//
// Plain JavaScript on purpose: bin/molecule.mjs and `npm start` use it to decide whether a build is stale and to
// rebuild, without loading any TypeScript tooling. Only our own sources are bundled; packages stay in
// node_modules (imported at run time), so native addons (better-sqlite3) and packages that read their own files
// keep working, and the bundle stays small.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const DIST = path.join(ROOT, 'dist');
const SRC = path.join(ROOT, 'src');

/** What each bundle is made from and where it goes. */
export const BUNDLES = {
  platform: { entry: path.join(SRC, 'main.ts'), out: path.join(DIST, 'main.js') },
  cli: { entry: path.join(SRC, 'cli', 'main.ts'), out: path.join(DIST, 'cli.js') },
};

/**
 * Sources find files relative to themselves (`new URL('../package.json', import.meta.url)`, `import.meta.dirname`
 * + '../../dist/ui'). In one bundle every module would share dist/main.js's location, so each module's
 * `import.meta.url` / `import.meta.dirname` is rewritten to the location its source file has in the repository,
 * computed relative to the bundle at run time. The checkout (or image) keeps the same layout around dist/, so
 * those paths stay right wherever the tree is copied; the sources themselves need not be there.
 */
const sourceLocations = {
  name: 'molecule-source-locations',
  setup(build) {
    build.onLoad({ filter: /\.(ts|tsx|mts)$/ }, async (args) => {
      let text = await fs.promises.readFile(args.path, 'utf8');
      if (text.includes('import.meta.url') || text.includes('import.meta.dirname') || text.includes('import.meta.filename')) {
        const file = path.relative(DIST, args.path).split(path.sep).join('/');
        const dir = path.posix.dirname(file);
        text = text
          .replaceAll('import.meta.url', `new URL(${JSON.stringify(file)}, import.meta.url).href`)
          .replaceAll('import.meta.filename', `__molecule_fileURLToPath(new URL(${JSON.stringify(file)}, import.meta.url))`)
          .replaceAll('import.meta.dirname', `__molecule_fileURLToPath(new URL(${JSON.stringify(`${dir}/`)}, import.meta.url)).replace(/[\\\\/]$/, '')`);
      }
      return { contents: text, loader: args.path.endsWith('x') ? 'tsx' : 'ts' };
    });
  },
};

/** Builds one bundle (esbuild: ~0.1–0.3 s). */
export async function buildBundle(name) {
  const { build } = await import('esbuild');
  const { entry, out } = BUNDLES[name];
  const tmp = `${out}.building-${process.pid}`;
  await build({
    entryPoints: [entry],
    outfile: tmp,
    bundle: true,
    packages: 'external',
    platform: 'node',
    format: 'esm',
    target: 'node20',
    sourcemap: 'linked',
    sourcesContent: true,
    plugins: [sourceLocations],
    banner: {
      js: [
        "import { createRequire as __molecule_createRequire } from 'node:module';",
        "import { fileURLToPath as __molecule_fileURLToPath } from 'node:url';",
        'const require = __molecule_createRequire(import.meta.url);',
      ].join(' '),
    },
    logLevel: 'warning',
  });
  // The map names the file it belongs to; keep that name when the finished build replaces the old one.
  const map = fs.readFileSync(`${tmp}.map`, 'utf8').replace(JSON.stringify(path.basename(tmp)), JSON.stringify(path.basename(out)));
  fs.writeFileSync(`${out}.map`, map);
  fs.rmSync(`${tmp}.map`);
  const code = fs.readFileSync(tmp, 'utf8').replace(`sourceMappingURL=${path.basename(tmp)}.map`, `sourceMappingURL=${path.basename(out)}.map`);
  fs.writeFileSync(tmp, code);
  fs.renameSync(tmp, out);
  return out;
}

/** The newest modification time of the files a bundle is made from (the web UI's sources are built by Vite). */
export function newestInput() {
  let newest = Math.max(mtime(path.join(ROOT, 'package.json')), mtime(fileURLToPath(import.meta.url)));
  const walk = (dir) => {
    for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
      const p = path.join(dir, e.name);
      if (e.isDirectory()) {
        if (p !== path.join(SRC, 'ui', 'web')) walk(p);
      } else if (/\.(ts|tsx|mts|json)$/.test(e.name)) newest = Math.max(newest, mtime(p));
    }
  };
  walk(SRC);
  return newest;
}

/** True when the bundle is missing or older than a source (always false without sources, e.g. in the image). */
export function isStale(name) {
  const built = mtime(BUNDLES[name].out);
  if (!built) return true;
  if (!fs.existsSync(SRC)) return false;
  return newestInput() > built;
}

/** Builds the bundles that are stale; returns the names it built. */
export async function ensureBundles(names = Object.keys(BUNDLES)) {
  const stale = names.filter(isStale);
  for (const name of stale) await buildBundle(name);
  return stale;
}

function mtime(p) {
  try {
    return fs.statSync(p).mtimeMs;
  } catch {
    return 0;
  }
}

export const bundleUrl = (name) => pathToFileURL(BUNDLES[name].out).href;
