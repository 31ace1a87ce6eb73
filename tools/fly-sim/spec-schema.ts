/**
 * The spec's OpenAPI 3.0 schemas, made into what ajv validates:
 *  - `nullable: true` becomes a `null` type alternative (the current spec has none, the code handles it anyway);
 *  - `$ref: '#/components/schemas/…'` resolves inside one registered document;
 *  - OpenAPI-only keywords (`example`, `x-*`, …) are dropped.
 *
 * Client dialects of reference §13 that contradict the spec's types are accepted by patching the loaded spec
 * (DIALECT_PATCHES): integer nanoseconds for duration strings, booleans for `autostop`, signal numbers. Fly's
 * server accepts them, so a client sending them is not wrong.
 */
import { isPlainObject } from './util.js';

type Json = any; // eslint-disable-line @typescript-eslint/no-explicit-any

const DURATION = { type: ['string', 'integer'], 'x-go-type': 'fly.Duration' };

/** Reference §13 dialects that the spec's types would reject. Each entry: [schema, property, replacement]. */
export const DIALECT_PATCHES: Array<[string, string, Json]> = [
  ['fly.StopConfig', 'timeout', DURATION],
  ['StopRequest', 'timeout', DURATION],
  ['fly.MachineCheck', 'interval', DURATION],
  ['fly.MachineCheck', 'timeout', DURATION],
  ['fly.MachineCheck', 'grace_period', DURATION],
  ['fly.MachineServiceCheck', 'interval', DURATION],
  ['fly.MachineServiceCheck', 'timeout', DURATION],
  ['fly.MachineServiceCheck', 'grace_period', DURATION],
  [
    'fly.MachineService',
    'autostop',
    { type: ['string', 'boolean'], enum: ['off', 'stop', 'suspend', true, false], 'x-go-type': '*fly.MachineAutostop' },
  ],
  ['SignalRequest', 'signal', 'SIGNAL_NAME_OR_NUMBER'],
];

const DROP_KEYS = new Set(['nullable', 'example', 'examples', 'discriminator', 'xml', 'externalDocs', 'deprecated']);
const LITERAL_KEYS = new Set(['enum', 'default', 'const', 'required']);

/** In place: the error phrasing reads the same schema objects, so its Go types follow the relaxed ones. */
export function applyDialectPatches(schemas: Record<string, Json>): void {
  for (const [schema, prop, replacement] of DIALECT_PATCHES) {
    const s = schemas[schema];
    if (!s?.properties?.[prop]) continue; // the spec changed shape; nothing to relax
    if (replacement === 'SIGNAL_NAME_OR_NUMBER') {
      const names: string[] = s.properties[prop].enum ?? [];
      const nums = Array.from({ length: 31 }, (_, i) => i + 1);
      s.properties[prop] = {
        ...s.properties[prop],
        type: ['string', 'integer'],
        enum: [...names, ...nums],
        'x-go-type': 'string',
      };
    } else {
      s.properties[prop] = { ...s.properties[prop], ...replacement };
    }
  }
}

export function escapePointer(s: string): string {
  return s.replace(/~/g, '~0').replace(/\//g, '~1');
}

/** Drops object keys whose value is null, recursively (Go's decoder treats such a field as absent). */
export function stripNulls(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(stripNulls);
  if (isPlainObject(v)) {
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) if (x !== null) out[k] = stripNulls(x);
    return out;
  }
  return v;
}

/** OpenAPI 3.0 schema objects → JSON Schema (draft-07 as ajv reads it). */
export function convertSchemas(schemas: Record<string, Json>, strict: boolean): Record<string, Json> {
  const out: Record<string, Json> = {};
  for (const [name, s] of Object.entries(schemas)) out[name] = convertNode(s, strict);
  return out;
}

function convertNode(node: Json, strict: boolean): Json {
  if (Array.isArray(node)) return node.map((n) => convertNode(n, strict));
  if (!isPlainObject(node)) return node;
  const out: Json = {};
  for (const [k, v] of Object.entries(node)) {
    if (DROP_KEYS.has(k) || k.startsWith('x-')) continue;
    if (LITERAL_KEYS.has(k)) out[k] = v;
    else if (k === 'properties' && isPlainObject(v)) {
      out.properties = {};
      for (const [pk, pv] of Object.entries(v)) out.properties[pk] = convertNode(pv, strict);
    } else if (k === '$ref' && typeof v === 'string') out.$ref = v.startsWith('#/') ? `fly${v}` : v;
    else out[k] = convertNode(v, strict);
  }
  if (node.nullable === true) {
    if (typeof out.type === 'string') out.type = [out.type, 'null'];
    else if (Array.isArray(out.type) && !out.type.includes('null')) out.type = [...out.type, 'null'];
    if (Array.isArray(out.enum) && !out.enum.includes(null)) out.enum = [...out.enum, null];
    if (out.$ref) {
      const ref = out.$ref;
      delete out.$ref;
      out.anyOf = [{ $ref: ref }, { type: 'null' }];
    }
  }
  if (strict && isPlainObject(out.properties) && out.additionalProperties === undefined) {
    out.additionalProperties = false;
  }
  return out;
}
