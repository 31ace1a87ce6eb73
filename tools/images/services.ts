/**
 * Offline stand-ins for the registry images deploy/docker-compose.yml uses (postgres, nginx), so the compose file
 * can run on a machine with no registry (the tests, CI). Each is a rootfs made of this host's own binaries (Debian's
 * postgresql-15 and nginx packages) and the libraries `ldd` lists, imported as an image like the node base
 * (tools/images/build.ts). They are test fixtures, not something to deploy: use the official images there.
 *
 *   npx tsx tools/images/services.ts      # localhost/molecule-postgres:15, localhost/molecule-nginx:latest
 *   MOLECULE_POSTGRES_IMAGE=localhost/molecule-postgres:15 MOLECULE_NGINX_IMAGE=localhost/molecule-nginx:latest docker-compose up -d
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type Docker from 'dockerode';
import { dockerSocketPath, engineClient } from '../../src/backends/docker/engine.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const POSTGRES_STANDIN = 'localhost/molecule-postgres:15';
export const NGINX_STANDIN = 'localhost/molecule-nginx:latest';
const PG = '/usr/lib/postgresql/15';

/** Whether this host has what the stand-ins are made of. */
export function canBuildStandIns(): boolean {
  return fs.existsSync(`${PG}/bin/postgres`) && fs.existsSync('/usr/sbin/nginx');
}

export async function buildStandIns(docker: Docker, log: (s: string) => void = () => {}): Promise<string[]> {
  await importRootfs(docker, POSTGRES_STANDIN, log, (root) => {
    const node = fs.realpathSync(process.execPath);
    copy(root, node, '/usr/local/bin/node');
    const binaries = [node, '/bin/sh', ...['postgres', 'initdb', 'pg_isready', 'pg_ctl'].map((b) => `${PG}/bin/${b}`)];
    for (const b of ['postgres', 'initdb', 'pg_isready', 'pg_ctl']) copy(root, `${PG}/bin/${b}`, `${PG}/bin/${b}`);
    copy(root, '/bin/sh', '/bin/sh');
    const keepLib = (p: string) => !/llvmjit|\/bitcode(\/|$)/.test(p); // the JIT (and its 100 MB libLLVM) stays out
    copyTree(root, `${PG}/lib`, keepLib);
    copyTree(root, '/usr/share/postgresql/15', (p) => !/\/(man|contrib)(\/|$)/.test(p));
    copyTree(root, '/usr/share/zoneinfo/Etc');
    copy(root, '/usr/share/zoneinfo/UTC', '/usr/share/zoneinfo/UTC');
    libs(root, [...binaries, ...fs.readdirSync(`${PG}/lib`).filter((f) => f.endsWith('.so') && keepLib(f)).map((f) => `${PG}/lib/${f}`)]);
    copy(root, path.join(ROOT, 'images/services/postgres-entrypoint.mjs'), '/usr/local/lib/postgres-entrypoint.mjs');
    write(root, '/etc/passwd', 'root:x:0:0:root:/root:/bin/sh\npostgres:x:999:999:postgres:/var/lib/postgresql:/bin/sh\n');
    write(root, '/etc/group', 'root:x:0:\npostgres:x:999:\n');
    write(root, '/etc/nsswitch.conf', 'passwd: files\ngroup: files\nhosts: files dns\n');
    dirs(root, ['/tmp', '/proc', '/sys', '/dev', '/run']);
    fs.mkdirSync(path.join(root, 'var/lib/postgresql/data'), { recursive: true });
    return { chown: ['var/lib/postgresql'], changes: ['USER 999:999', 'ENV PATH=/usr/lib/postgresql/15/bin:/usr/local/bin:/usr/bin:/bin PGDATA=/var/lib/postgresql/data TZ=UTC', 'VOLUME /var/lib/postgresql/data', 'EXPOSE 5432', 'CMD ["node", "/usr/local/lib/postgres-entrypoint.mjs"]'] };
  });
  await importRootfs(docker, NGINX_STANDIN, log, (root) => {
    copy(root, '/usr/sbin/nginx', '/usr/sbin/nginx');
    libs(root, ['/usr/sbin/nginx']);
    copy(root, path.join(ROOT, 'images/services/nginx.conf'), '/etc/nginx/nginx.conf');
    write(root, '/etc/passwd', 'root:x:0:0:root:/root:/nonexistent\nnobody:x:65534:65534:nobody:/nonexistent:/nonexistent\n');
    write(root, '/etc/group', 'root:x:0:\nnogroup:x:65534:\n');
    write(root, '/etc/nsswitch.conf', 'passwd: files\ngroup: files\nhosts: files dns\n');
    dirs(root, ['/tmp', '/proc', '/sys', '/dev', '/run', '/etc/nginx/conf.d', '/var/lib/nginx', '/var/log/nginx', '/var/lock']);
    return { chown: [], changes: ['EXPOSE 8080', 'CMD ["/usr/sbin/nginx", "-g", "daemon off;"]'] };
  });
  return [POSTGRES_STANDIN, NGINX_STANDIN];
}

async function importRootfs(docker: Docker, tag: string, log: (s: string) => void, fill: (root: string) => { chown: string[]; changes: string[] }): Promise<void> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'molecule-standin-'));
  try {
    const root = path.join(dir, 'rootfs');
    const { chown, changes } = fill(root);
    const tarball = path.join(dir, 'rootfs.tar');
    // Everything root-owned, except the data dirs (the second tar run appends them owned by 999).
    const all = fs.readdirSync(root).map((e) => `./${e}`);
    execFileSync('tar', ['-C', root, '--owner=0', '--group=0', '--numeric-owner', ...chown.map((p) => `--exclude=./${p}`), '-cf', tarball, ...all]);
    if (chown.length) execFileSync('tar', ['-C', root, '--owner=999', '--group=999', '--numeric-owner', '-rf', tarball, ...chown.map((p) => `./${p}`)]);
    log(`importing ${tag} (${(fs.statSync(tarball).size / 1e6).toFixed(0)} MB)`);
    const stream = await docker.importImage(tarball, { repo: tag.slice(0, tag.lastIndexOf(':')), tag: tag.slice(tag.lastIndexOf(':') + 1), changes } as object);
    await new Promise<void>((resolve, reject) => docker.modem.followProgress(stream, (err: Error | null) => (err ? reject(err) : resolve())));
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

function copy(root: string, from: string, to: string): void {
  const dest = path.join(root, to);
  fs.mkdirSync(path.dirname(dest), { recursive: true });
  fs.copyFileSync(fs.realpathSync(from), dest);
  fs.chmodSync(dest, fs.statSync(fs.realpathSync(from)).mode & 0o777);
}

function copyTree(root: string, dir: string, keep: (p: string) => boolean = () => true): void {
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (!keep(p)) continue;
    if (e.isDirectory()) copyTree(root, p, keep);
    else if (e.isFile() || e.isSymbolicLink()) copy(root, p, p);
  }
}

function libs(root: string, binaries: string[]): void {
  const seen = new Set<string>();
  for (const b of binaries) {
    let out = '';
    try {
      out = execFileSync('ldd', [b], { encoding: 'utf8' });
    } catch {
      continue; // not dynamic
    }
    for (const line of out.split('\n')) {
      const m = line.match(/=>\s*(\/\S+)/) ?? line.match(/^\s*(\/\S+)/);
      if (m && !seen.has(m[1]!)) {
        seen.add(m[1]!);
        copy(root, m[1]!, m[1]!);
      }
    }
  }
}

function write(root: string, to: string, text: string): void {
  fs.mkdirSync(path.dirname(path.join(root, to)), { recursive: true });
  fs.writeFileSync(path.join(root, to), text, { mode: 0o644 });
}

function dirs(root: string, list: string[]): void {
  for (const d of list) fs.mkdirSync(path.join(root, d), { recursive: true });
  fs.chmodSync(path.join(root, 'tmp'), 0o1777);
}

if (process.argv[1] && fileURLToPath(import.meta.url) === path.resolve(process.argv[1])) {
  const docker = engineClient(dockerSocketPath(process.env.DOCKER_HOST));
  const made = await buildStandIns(docker, (s) => process.stdout.write(`${s}\n`));
  process.stdout.write(`built: ${made.join(', ')}\n`);
}
