/**
 * Builds the workspace runtime images into the local Docker engine (DOCKER_HOST), offline when needed.
 *
 *   npm run build:images                    # base from this host's node, then every runtime image
 *   npm run build:images -- --base node:20-bookworm-slim   # base from a registry instead
 *   npm run build:images -- --test          # also the test images the Docker tests use
 *   npm run build:images -- --platform-only # only the platform image
 *
 * No registry is needed: the base image is this host's node binary plus the shared libraries `ldd` lists,
 * imported as a filesystem tarball (`POST /images/create?fromSrc=-`). Runtime images then build on top of it
 * with the engine's classic builder (`POST /build`), from images/<runtime>/Dockerfile with the repository root
 * as context. Each runtime image is tagged with the name the platform will ask for (MOLECULE_RUNTIME_IMAGE /
 * MOLECULE_RUNTIME_IMAGE_<RUNTIME>, default ghcr.io/molecule-ai/workspace-<runtime>:latest).
 *
 * The platform's own image (images/platform/Dockerfile, PLATFORM_IMAGE) is built the same way from `npm run build`'s
 * dist/ and the production packages the bundle imports (see platformFiles).
 */
import { execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type Docker from 'dockerode';
import { buildAgentBundle } from '../../src/agent/build.js';
import { buildAll } from '../build/build.js';
import { dockerSocketPath, engineClient } from '../../src/backends/docker/engine.js';
import { DEFAULT_RUNTIME_IMAGE } from '../../src/core/config.js';
import { imageFor, RUNTIMES } from '../../src/core/runtimes.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
/** The platform's image (images/platform/Dockerfile). */
export const PLATFORM_IMAGE = 'ghcr.io/molecule-ai/platform:latest';
/** Where the Docker tests look for their images (see test/docker/support.ts). */
export const TEST_IMAGE_TEMPLATE = 'localhost/molecule-test/workspace-{runtime}:test';
/** The unprivileged user agents run as (the runtime Dockerfiles give it /workspace). */
const AGENT_UID = 1000;
/** Bumped when the base's contents change, so an older base of the same node is imported again. */
const BASE_LAYOUT = '2';

/**
 * A base image holding this host's node: `localhost/molecule-node:<version>`. Imported only when the tag is missing
 * or holds another node binary (label molecule.node_sha256), so repeated builds leave no dangling 100 MB images.
 */
export async function buildHostBase(docker: Docker, log: (s: string) => void = () => {}): Promise<string> {
  const tag = `localhost/molecule-node:${process.version.slice(1)}`;
  const node = fs.realpathSync(process.execPath);
  const sha = crypto.createHash('sha256').update(fs.readFileSync(node)).digest('hex');
  const existing = await docker.getImage(tag).inspect().catch(() => undefined);
  const labels = existing?.Config?.Labels ?? {};
  if (labels['molecule.node_sha256'] === sha && labels['molecule.base_layout'] === BASE_LAYOUT) return tag;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'molecule-base-'));
  try {
    const root = path.join(dir, 'rootfs');
    copyInto(root, node, '/usr/local/bin/node');
    for (const lib of sharedLibraries(node)) copyInto(root, lib, lib);
    write(root, '/etc/passwd', `root:x:0:0:root:/root:/usr/sbin/nologin\nagent:x:${AGENT_UID}:${AGENT_UID}:molecule agent:/workspace:/usr/sbin/nologin\n`);
    write(root, '/etc/group', `root:x:0:\nagent:x:${AGENT_UID}:\n`);
    write(root, '/etc/nsswitch.conf', 'passwd: files\ngroup: files\nhosts: files dns\n');
    for (const d of ['/tmp', '/root', '/proc', '/sys', '/dev']) fs.mkdirSync(path.join(root, d), { recursive: true });
    fs.chmodSync(path.join(root, 'tmp'), 0o1777);
    // Root owns everything. Like node:20-bookworm-slim there is no /workspace: each runtime's Dockerfile makes it
    // and gives it to the agent user, so an image built on either base has the same, writable, volume.
    const tarball = path.join(dir, 'rootfs.tar');
    execFileSync('tar', ['-C', root, '--owner=0', '--group=0', '--numeric-owner', '-cf', tarball, '.']);
    log(`importing ${tag} (${(fs.statSync(tarball).size / 1e6).toFixed(0)} MB: ${node} and its libraries)`);
    const stream = await docker.importImage(tarball, {
      repo: tag.slice(0, tag.lastIndexOf(':')),
      tag: tag.slice(tag.lastIndexOf(':') + 1),
      changes: ['ENV PATH=/usr/local/bin:/usr/bin:/bin', 'CMD ["node"]', `LABEL molecule.node_sha256=${sha}`, `LABEL molecule.base_layout=${BASE_LAYOUT}`],
    } as object);
    await drain(docker, stream);
    return tag;
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** Builds `dockerfile` (relative to the repo root) with the repo root as context, via the classic builder. */
export async function buildImage(docker: Docker, dockerfile: string, tag: string, buildargs: Record<string, string>, files: string[], log: (s: string) => void = () => {}): Promise<void> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'molecule-ctx-'));
  try {
    // Only what the Dockerfile copies goes in the context, not the whole repository.
    const tarball = path.join(dir, 'context.tar');
    execFileSync('tar', ['-C', ROOT, '--owner=0', '--group=0', '--numeric-owner', '-cf', tarball, dockerfile, ...files]);
    log(`building ${tag} from ${dockerfile}`);
    const stream = await docker.buildImage(tarball, { t: tag, dockerfile, buildargs, version: '1', rm: true, forcerm: true } as object);
    await drain(docker, stream, log);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

export interface BuildOptions {
  /** 'host' (default) or an image reference to build FROM. */
  base?: string;
  /** Image name template for runtime images ({runtime} is replaced). */
  template?: string;
  /** Also build the test images (runtime image + test hooks), tagged per TEST_IMAGE_TEMPLATE. */
  test?: boolean;
  /** Only the test images (tests call this; the runtime images are built under the test names). */
  testOnly?: boolean;
  /** The platform image: built unless testOnly, or false; `only` builds nothing else. */
  platform?: boolean | 'only';
  log?: (s: string) => void;
}

/** Builds every runtime image (and optionally the test images). Returns the tags it made. */
export async function buildImages(docker: Docker, opts: BuildOptions = {}): Promise<string[]> {
  const log = opts.log ?? (() => {});
  await buildAgentBundle();
  const base = !opts.base || opts.base === 'host' ? await buildHostBase(docker, log) : opts.base;
  const made: string[] = [];
  if (opts.platform === 'only' || (opts.platform !== false && !opts.testOnly)) {
    made.push(await buildPlatformImage(docker, { base, log }));
    if (opts.platform === 'only') return made;
  }
  for (const runtime of RUNTIMES) {
    const dockerfile = `images/${runtime}/Dockerfile`;
    const files = ['dist/agent.mjs', `images/${runtime}/workspace`];
    if (!opts.testOnly) {
      const tag = imageFor(runtime, opts.template ?? (process.env.MOLECULE_RUNTIME_IMAGE || DEFAULT_RUNTIME_IMAGE));
      await buildImage(docker, dockerfile, tag, { BASE_IMAGE: base }, files, log);
      made.push(tag);
    }
    if (opts.test || opts.testOnly) {
      const plain = imageFor(runtime, TEST_IMAGE_TEMPLATE, {}).replace(/:test$/, ':plain');
      await buildImage(docker, dockerfile, plain, { BASE_IMAGE: base }, files, log);
      const tag = imageFor(runtime, TEST_IMAGE_TEMPLATE, {});
      await buildImage(docker, 'images/test/Dockerfile', tag, { RUNTIME_IMAGE: plain }, ['images/test/test-hooks.mjs'], log);
      made.push(tag);
    }
  }
  return made;
}

/**
 * The platform image: `npm run build` (only what is stale), then images/platform/Dockerfile with dist/ and the
 * production packages in the context. Layers are cached by content, so an unchanged tree rebuilds in about a second.
 */
export async function buildPlatformImage(docker: Docker, opts: { base?: string; tag?: string; log?: (s: string) => void } = {}): Promise<string> {
  const log = opts.log ?? (() => {});
  await buildAll({ ifStale: true, log });
  const base = !opts.base || opts.base === 'host' ? await buildHostBase(docker, log) : opts.base;
  const tag = opts.tag ?? PLATFORM_IMAGE;
  await buildImage(docker, 'images/platform/Dockerfile', tag, { BASE_IMAGE: base }, platformFiles(), log);
  return tag;
}

/**
 * What the image needs besides its Dockerfile: package.json, dist/ (without half-written builds) and, of
 * node_modules, exactly the packages dist/main.js imports and their dependencies, resolved through
 * package-lock.json as node resolves them (a nested node_modules first, then each parent's). esbuild, tsx, vite and
 * the agent's model SDKs (bundled into dist/agent.mjs) stay out.
 */
export function platformFiles(): string[] {
  const bundle = fs.readFileSync(path.join(ROOT, 'dist', 'main.js'), 'utf8');
  const lock = JSON.parse(fs.readFileSync(path.join(ROOT, 'package-lock.json'), 'utf8')) as { packages: Record<string, { dependencies?: Record<string, string>; optionalDependencies?: Record<string, string>; peerDependencies?: Record<string, string> }> };
  const entries = new Set<string>();
  for (const m of bundle.matchAll(/(?:^|[\s;])(?:import|export)\s[^'"]*?from\s*"([^".][^"]*)"|import\("([^".][^"]*)"\)|require\("([^".][^"]*)"\)/g)) {
    const spec = m[1] ?? m[2] ?? m[3];
    if (!spec || spec.startsWith('node:')) continue;
    const name = spec.startsWith('@') ? spec.split('/').slice(0, 2).join('/') : spec.split('/')[0];
    if (lock.packages[`node_modules/${name}`]) entries.add(`node_modules/${name}`);
  }
  const resolve = (from: string, dep: string): string | undefined => {
    for (let dir = from; ; ) {
      const candidate = `${dir ? `${dir}/` : ''}node_modules/${dep}`;
      if (lock.packages[candidate]) return candidate;
      if (!dir) return undefined;
      const i = dir.lastIndexOf('/node_modules/');
      dir = i < 0 ? '' : dir.slice(0, i);
    }
  };
  const seen = new Set<string>();
  const queue = [...entries];
  while (queue.length) {
    const pkg = queue.pop()!;
    if (seen.has(pkg)) continue;
    seen.add(pkg);
    const info = lock.packages[pkg]!;
    for (const dep of Object.keys({ ...info.dependencies, ...info.optionalDependencies, ...info.peerDependencies })) {
      const at = resolve(pkg, dep);
      if (at && !dep.startsWith('@types/') && fs.existsSync(path.join(ROOT, at))) queue.push(at);
    }
  }
  // A nested package is inside its parent's folder: list only the outermost ones.
  const dirs = [...seen].filter((p) => fs.existsSync(path.join(ROOT, p))).sort();
  const top = dirs.filter((p) => !dirs.some((q) => q !== p && p.startsWith(`${q}/`)));
  // better-sqlite3 carries SQLite's C sources and its build tree (~28 MB): only the loader and the addon are used.
  const sqlite = top.indexOf('node_modules/better-sqlite3');
  if (sqlite >= 0) top.splice(sqlite, 1, ...['package.json', 'lib', 'build/Release/better_sqlite3.node'].map((f) => `node_modules/better-sqlite3/${f}`));
  const dist = fs.readdirSync(path.join(ROOT, 'dist')).filter((f) => !f.includes('.building-') && !f.includes('.old-')).map((f) => `dist/${f}`);
  return ['package.json', ...dist, ...top, 'images/platform/src', 'images/platform/data'];
}

function copyInto(root: string, from: string, to: string): void {
  const dest = path.join(root, to);
  fs.mkdirSync(path.dirname(dest), { recursive: true });
  fs.copyFileSync(fs.realpathSync(from), dest);
  fs.chmodSync(dest, 0o755);
}

function write(root: string, to: string, text: string): void {
  fs.mkdirSync(path.dirname(path.join(root, to)), { recursive: true });
  fs.writeFileSync(path.join(root, to), text, { mode: 0o644 });
}

/** Absolute paths of the libraries (and the loader) `ldd` says the binary loads. */
function sharedLibraries(binary: string): string[] {
  const out = execFileSync('ldd', [binary], { encoding: 'utf8' });
  const libs = new Set<string>();
  for (const line of out.split('\n')) {
    const m = line.match(/=>\s*(\/\S+)/) ?? line.match(/^\s*(\/\S+)/);
    if (m) libs.add(m[1]);
  }
  return [...libs];
}

/** Reads a build/import progress stream to the end; throws on the first error it reports. */
async function drain(docker: Docker, stream: NodeJS.ReadableStream, log: (s: string) => void = () => {}): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    docker.modem.followProgress(
      stream,
      (err: Error | null, out: { error?: string; errorDetail?: { message?: string } }[]) => {
        const failed = err?.message ?? out.find((o) => o.error)?.error;
        if (failed) reject(new Error(failed));
        else resolve();
      },
      (ev: { stream?: string }) => {
        const line = ev.stream?.trim();
        if (line && /^Step|Successfully/.test(line)) log(`  ${line}`);
      },
    );
  });
}

if (process.argv[1] && fileURLToPath(import.meta.url) === path.resolve(process.argv[1])) {
  const args = process.argv.slice(2);
  const value = (flag: string) => {
    const i = args.indexOf(flag);
    return i >= 0 ? args[i + 1] : undefined;
  };
  const socket = dockerSocketPath(process.env.DOCKER_HOST);
  const docker = engineClient(socket);
  try {
    const made = await buildImages(docker, {
      base: value('--base'),
      template: value('--tag'),
      test: args.includes('--test'),
      testOnly: args.includes('--test-only'),
      platform: args.includes('--platform-only') ? 'only' : args.includes('--no-platform') ? false : undefined,
      log: (s) => process.stdout.write(`${s}\n`),
    });
    process.stdout.write(`built: ${made.join(', ')}\n`);
  } catch (e) {
    process.stderr.write(`build-images: ${(e as Error).message} (engine at ${socket})\n`);
    process.exit(1);
  }
}
