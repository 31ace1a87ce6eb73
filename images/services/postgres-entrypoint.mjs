// PID 1 of the offline Postgres stand-in (tools/images/services.ts): what the official image's entrypoint does
// for POSTGRES_USER / POSTGRES_PASSWORD / POSTGRES_DB on first start, then the server, with signals forwarded.
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

const BIN = '/usr/lib/postgresql/15/bin';
const data = process.env.PGDATA || '/var/lib/postgresql/data';
const user = process.env.POSTGRES_USER || 'postgres';
const db = process.env.POSTGRES_DB || user;
const password = process.env.POSTGRES_PASSWORD;
if (!password) {
  process.stderr.write('POSTGRES_PASSWORD is required\n');
  process.exit(1);
}
if (!fs.existsSync(path.join(data, 'PG_VERSION'))) {
  fs.mkdirSync(data, { recursive: true, mode: 0o700 });
  const pw = '/tmp/pgpass';
  fs.writeFileSync(pw, `${password}\n`, { mode: 0o600 });
  const init = spawnSync(`${BIN}/initdb`, ['-D', data, '-U', user, `--pwfile=${pw}`, '--auth=scram-sha-256', '--locale=C', '-E', 'UTF8', '--no-sync'], { stdio: 'inherit' });
  fs.rmSync(pw);
  if (init.status !== 0) process.exit(init.status ?? 1);
  fs.appendFileSync(path.join(data, 'pg_hba.conf'), 'host all all all scram-sha-256\n');
  fs.appendFileSync(path.join(data, 'postgresql.conf'), "listen_addresses = '*'\nunix_socket_directories = '/tmp'\n");
  if (db !== 'postgres') {
    const r = spawnSync(`${BIN}/postgres`, ['--single', '-D', data, 'postgres'], { input: `CREATE DATABASE "${db}" OWNER "${user}";\n`, stdio: ['pipe', 'inherit', 'inherit'] });
    if (r.status !== 0) process.exit(r.status ?? 1);
  }
}
const server = spawn(`${BIN}/postgres`, ['-D', data], { stdio: 'inherit' });
for (const s of ['SIGTERM', 'SIGINT', 'SIGQUIT']) process.on(s, () => server.kill(s));
server.on('exit', (code, signal) => process.exit(code ?? (signal ? 0 : 1)));
