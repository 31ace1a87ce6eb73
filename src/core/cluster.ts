import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type { Logger } from 'pino';
import { ConfigError, type Config } from './config.js';
import { Sealer } from './crypto.js';
import type { ClusterFacts, SecretStore } from './ports.js';
import { secretAad } from './secrets.js';

/** What joining needs of the store. */
export interface ClusterStore {
  kind: 'sqlite' | 'postgres';
  facts: ClusterFacts;
  secrets: Pick<SecretStore, 'any'>;
}

/** What a replica takes from the cluster it joins. */
export interface ClusterMembership {
  sealer: Sealer;
  /** The cluster's identity for the backends' labels and names; undefined on SQLite (backends keep their id files). */
  platformId: string | undefined;
}

const KEY_CHECK = { key: 'key_check', plaintext: 'molecule-key-check', aad: 'cluster:key-check' } as const;
const PLATFORM_ID = 'platform_id';

/**
 * The id files the backends generate into the data dir (loadDockerPlatformId, flyio loadPlatformId). A platform
 * that ran on Postgres alone before the cluster table existed labelled its instances with one of these.
 */
const PLATFORM_ID_FILES = { docker: 'docker-platform-id', flyio: 'flyio-platform-id' } as const;
/** The same shape backends/naming.ts accepts, so a seeded id is one the backends would have used. */
const PLATFORM_ID_SHAPE = /^[A-Za-z0-9_.-]{4,64}$/;

/**
 * Joins the cluster that shares this store. On Postgres several replicas may share the database, so the secrets
 * key and the platform id are facts of the cluster, not of one data dir: the key is checked against a value
 * sealed by the first replica, and the platform id is read from (or, first, written to) the database. SQLite is
 * one process: the key comes from MOLECULE_SECRETS_KEY or the data dir, and the backends keep their id files.
 */
export async function joinCluster(
  store: ClusterStore,
  config: Config,
  opts: { logger?: Pick<Logger, 'info' | 'warn'> } = {},
): Promise<ClusterMembership> {
  if (store.kind !== 'postgres') return { sealer: Sealer.load(config.dataDir, config.secretsKey), platformId: undefined };
  // loadConfig already refuses this; a Config built by hand must not fall back to a per-replica generated key.
  if (!config.secretsKey) {
    throw new ConfigError('MOLECULE_SECRETS_KEY is required with DATABASE_URL: every replica needs the same key (make one with: openssl rand -base64 32)');
  }
  const sealer = Sealer.load(config.dataDir, config.secretsKey);
  await checkKey(store, config, sealer);
  const platformId = await clusterPlatformId(store, config, opts.logger);
  return { sealer, platformId };
}

/** The key must open the cluster's check value; the first replica to start writes it. */
async function checkKey(store: ClusterStore, config: Config, sealer: Sealer): Promise<void> {
  let check = await store.facts.get(KEY_CHECK.key);
  if (check === undefined) {
    await opensExistingSecrets(store, config, sealer);
    // Two replicas may start at once: whichever insert lands first is the check both go by.
    check = await store.facts.insertOnce(KEY_CHECK.key, sealer.seal(KEY_CHECK.plaintext, KEY_CHECK.aad));
  }
  let opened: string | undefined;
  try {
    opened = sealer.open(check, KEY_CHECK.aad);
  } catch {
    opened = undefined;
  }
  if (opened !== KEY_CHECK.plaintext) {
    throw new ConfigError(
      'MOLECULE_SECRETS_KEY differs from the key the data in this database was sealed with, so this replica could not ' +
        "open the cluster's secrets or agent tokens. Start it with the same MOLECULE_SECRETS_KEY as the other replicas " +
        '(the key the cluster was first started with).',
    );
  }
}

/**
 * Before the cluster's check value exists, secrets may already be in the database: a platform that ran on
 * Postgres alone sealed them with the key generated into its data dir. Recording a check for a different key
 * would make them unreadable for good, so refuse, and say where the old key is.
 */
async function opensExistingSecrets(store: ClusterStore, config: Config, sealer: Sealer): Promise<void> {
  const row = await store.secrets.any();
  if (!row) return;
  try {
    sealer.open(row.sealed, secretAad(row.scope, row.key));
    return;
  } catch {
    // Falls through to the explanation.
  }
  const generated = path.join(config.dataDir, 'secrets.key');
  const hint = fs.existsSync(generated)
    ? `This data dir holds a generated key; if this platform sealed them, use it: MOLECULE_SECRETS_KEY=$(cat ${generated}).`
    : 'If a platform with a generated key sealed them, its key is the file secrets.key in its MOLECULE_DATA_DIR.';
  throw new ConfigError(`MOLECULE_SECRETS_KEY does not open the secrets already stored in this database. ${hint}`);
}

/**
 * The id that labels this cluster's containers and machines. The first replica creates it, from this data dir's
 * backend id file when there is one (instances a single platform already runs stay its own), else a new one.
 */
async function clusterPlatformId(store: ClusterStore, config: Config, logger?: Pick<Logger, 'info' | 'warn'>): Promise<string> {
  const files = idFiles(config);
  let id = await store.facts.get(PLATFORM_ID);
  if (id === undefined) {
    const seed = files.find((f) => f.id);
    id = await store.facts.insertOnce(PLATFORM_ID, seed?.id ?? `mp-${crypto.randomBytes(8).toString('hex')}`);
    if (seed && id === seed.id) logger?.info({ platform_id: id, from: seed.file }, `cluster identity ${id} taken from ${seed.file}`);
  }
  for (const f of files) {
    if (f.id && f.id !== id) {
      logger?.warn(
        { file: f.file, file_platform_id: f.id, platform_id: id },
        `${f.file} holds platform id ${f.id}, but the cluster's is ${id}: instances labelled ${f.id} are no longer managed (neither adopted nor removed); remove them by hand if they are not another platform's`,
      );
    }
  }
  return id;
}

/** This data dir's backend id files, the configured backend's first, with the id each holds (if valid). */
function idFiles(config: Config): { file: string; id: string | undefined }[] {
  const names = config.backend === 'flyio' ? [PLATFORM_ID_FILES.flyio, PLATFORM_ID_FILES.docker] : [PLATFORM_ID_FILES.docker, PLATFORM_ID_FILES.flyio];
  return names.map((name) => {
    const file = path.join(config.dataDir, name);
    let id: string | undefined;
    try {
      const v = fs.readFileSync(file, 'utf8').trim();
      if (PLATFORM_ID_SHAPE.test(v)) id = v;
    } catch {
      id = undefined;
    }
    return { file, id };
  });
}
