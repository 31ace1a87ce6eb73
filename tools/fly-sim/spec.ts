/**
 * Request-body validation against the official Machines API OpenAPI 3.0 spec.
 *
 * The spec is converted to JSON Schema for ajv:
 *  - `nullable: true` becomes a `null` type alternative (the current spec has none, the code handles it anyway);
 *  - `$ref: '#/components/schemas/…'` resolves inside one registered document;
 *  - OpenAPI-only keywords (`example`, `x-*`, …) are dropped.
 *
 * Unknown fields: the spec never sets `additionalProperties: false`, and Fly's server (Go `encoding/json`) ignores
 * unknown fields, so by default unknown fields are accepted — exactly like Fly. `{ strict: true }` rejects them
 * (`json: unknown field "…"`): use it in tests of *our* client, where an unknown field is almost always a typo
 * that Fly would silently drop.
 *
 * JSON `null` for a field is accepted (Go leaves the field at its zero value), so nulls are stripped before
 * validation, in strict mode too.
 *
 * Client dialects of reference §13 that contradict the spec's types are accepted by patching the loaded spec
 * (see DIALECT_PATCHES): integer nanoseconds for duration strings, booleans for `autostop`, signal numbers.
 *
 * Errors are phrased the way Fly's Go server phrases them, naming the field:
 *   json: cannot unmarshal string into Go struct field MachineGuest.config.guest.memory_mb of type int
 *   json: cannot unmarshal array into Go value of type main.stopRequest
 */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, isAbsolute, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';
import addFormatsModule from 'ajv-formats';
import { isPlainObject } from './util.js';

type Json = any; // eslint-disable-line @typescript-eslint/no-explicit-any

const here = dirname(fileURLToPath(import.meta.url));

/** Where the spec is read from: `$FLY_OPENAPI_SPEC`, else the copy shipped next to this file. */
export function defaultSpecPath(): string {
  const env = process.env.FLY_OPENAPI_SPEC;
  if (env) return isAbsolute(env) ? env : resolve(process.cwd(), env);
  return resolve(here, 'fly-machines-openapi3.json');
}

/** The reference copy the bundled spec was taken from (`../shared/reference/` beside the repo), when present. */
export function referenceSpecPath(): string | null {
  const p = resolve(here, '../../../shared/reference/fly-machines-openapi3.json');
  return existsSync(p) ? p : null;
}

export interface SpecIssue {
  /** Human path into the body, e.g. `config.services[0].internal_port` ('' for the body itself). */
  path: string;
  keyword: string;
  message: string;
}

export interface SpecValidation {
  ok: boolean;
  operationId: string;
  /** First problem, phrased like Fly's 400 `error` text. */
  error?: string;
  issues: SpecIssue[];
}

export interface ValidateOptions {
  /** Reject fields the spec does not define (Fly itself ignores them). */
  strict?: boolean;
  /** Report a missing body where the spec marks the body required (Fly accepts e.g. a bodiless lease POST). */
  requireBody?: boolean;
  /** Read the spec from here instead of defaultSpecPath(). */
  specPath?: string;
}

export interface OperationInfo {
  operationId: string;
  method: string;
  /** Template relative to `/v1`, e.g. `/apps/{app_name}/machines/{machine_id}/stop`. */
  path: string;
  /** Component schema name of the JSON body, if the operation takes one. */
  bodySchema: string | null;
  bodyRequired: boolean;
}

/** Short names accepted by validateAgainstSpec besides operationIds. */
export const OPERATION_ALIASES: Record<string, string> = {
  create: 'Machines_create',
  update: 'Machines_update',
  stop: 'Machines_stop',
  lease: 'Machines_create_lease',
  signal: 'Machines_signal',
  metadata: 'Machines_upsert_metadata',
  metadata_replace: 'Machines_update_metadata',
  exec: 'Machines_exec',
  app_create: 'Apps_create',
};

/** Go type names for top-level bodies, used in `cannot unmarshal X into Go value of type …`. */
const GO_ROOT_TYPES: Record<string, string> = {
  StopRequest: 'main.stopRequest', // seen verbatim (reference §4)
};

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

export class FlySpec {
  readonly doc: Json;
  readonly schemas: Record<string, Json>;
  readonly operations = new Map<string, OperationInfo>();
  private readonly templates: Array<{ op: OperationInfo; re: RegExp; literals: number }> = [];
  private readonly ajv: Record<'lenient' | 'strict', Ajv | undefined> = { lenient: undefined, strict: undefined };
  private readonly compiled = new Map<string, ValidateFunction>();

  constructor(
    readonly path: string,
    raw: Json,
  ) {
    this.doc = raw;
    this.schemas = raw.components?.schemas ?? {};
    this.applyDialectPatches();
    for (const [p, item] of Object.entries<Json>(raw.paths ?? {})) {
      for (const method of ['get', 'post', 'put', 'patch', 'delete']) {
        const op = item[method];
        if (!op?.operationId) continue;
        const ref: string | undefined = op.requestBody?.content?.['application/json']?.schema?.$ref;
        const info: OperationInfo = {
          operationId: op.operationId,
          method: method.toUpperCase(),
          path: p,
          bodySchema: ref ? ref.split('/').pop()! : null,
          bodyRequired: op.requestBody?.required === true,
        };
        // PUT and PATCH metadata share an operationId; keep both reachable by method+path, first by id.
        if (!this.operations.has(info.operationId)) this.operations.set(info.operationId, info);
        const re = new RegExp(`^${p.replace(/[.*+?^$()|[\]\\]/g, '\\$&').replace(/\{[^}]+\}/g, '[^/]+')}$`);
        this.templates.push({ op: info, re, literals: p.split('/').filter((s) => s && !s.startsWith('{')).length });
      }
    }
    this.templates.sort((a, b) => b.literals - a.literals);
  }

  static load(path = defaultSpecPath()): FlySpec {
    const raw = JSON.parse(readFileSync(path, 'utf8'));
    if (!raw?.openapi || !raw.components?.schemas) throw new Error(`${path} is not an OpenAPI 3 document`);
    return new FlySpec(path, raw);
  }

  private applyDialectPatches(): void {
    for (const [schema, prop, replacement] of DIALECT_PATCHES) {
      const s = this.schemas[schema];
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

  /** Which operation a request is, from its method and path (with or without `/v1`, query ignored). */
  findOperation(method: string, path: string): OperationInfo | null {
    let p = path.split('?')[0];
    if (p.startsWith('/v1/')) p = p.slice(3);
    const m = method.toUpperCase();
    for (const t of this.templates) if (t.op.method === m && t.re.test(p)) return t.op;
    return null;
  }

  resolveOperation(operation: string | { method: string; path: string }): OperationInfo | null {
    if (typeof operation !== 'string') return this.findOperation(operation.method, operation.path);
    return this.operations.get(OPERATION_ALIASES[operation] ?? operation) ?? null;
  }

  private getAjv(strict: boolean): Ajv {
    const key = strict ? 'strict' : 'lenient';
    let ajv = this.ajv[key];
    if (!ajv) {
      ajv = new Ajv({ allErrors: true, verbose: true, strict: false, validateFormats: true });
      const addFormats = ((addFormatsModule as Json).default ?? addFormatsModule) as (a: Ajv) => void;
      addFormats(ajv);
      ajv.addSchema({ $id: 'fly', components: { schemas: convertSchemas(this.schemas, strict) } });
      this.ajv[key] = ajv;
    }
    return ajv;
  }

  private validator(schemaName: string, strict: boolean): ValidateFunction {
    const key = `${strict ? 's' : 'l'}:${schemaName}`;
    let v = this.compiled.get(key);
    if (!v) {
      v = this.getAjv(strict).compile({ $ref: `fly#/components/schemas/${escapePointer(schemaName)}` });
      this.compiled.set(key, v);
    }
    return v;
  }

  /** Validates a body against the schema of `operation` (operationId, alias or {method, path}). */
  validate(operation: string | { method: string; path: string }, body: unknown, opts: ValidateOptions = {}): SpecValidation {
    const op = this.resolveOperation(operation);
    if (!op) {
      const name = typeof operation === 'string' ? operation : `${operation.method} ${operation.path}`;
      throw new Error(`unknown Machines API operation: ${name}`);
    }
    if (!op.bodySchema) {
      return { ok: true, operationId: op.operationId, issues: [] };
    }
    if (body === undefined) {
      if (opts.requireBody && op.bodyRequired) {
        const message = 'request body is required';
        return { ok: false, operationId: op.operationId, error: message, issues: [{ path: '', keyword: 'required', message }] };
      }
      return { ok: true, operationId: op.operationId, issues: [] };
    }
    const data = body === null ? {} : stripNulls(body);
    const v = this.validator(op.bodySchema, opts.strict === true);
    if (v(data)) return { ok: true, operationId: op.operationId, issues: [] };
    const issues = (v.errors ?? [])
      .filter((e) => !(e.keyword === 'enum' && (v.errors ?? []).some((o) => o.keyword === 'type' && o.instancePath === e.instancePath)))
      .map((e) => this.describe(op.bodySchema!, e));
    const unique = issues.filter((i, n) => issues.findIndex((j) => j.message === i.message) === n);
    return { ok: false, operationId: op.operationId, error: unique[0]?.message, issues: unique };
  }

  // --- error phrasing ------------------------------------------------------------------------------------------------

  private deref(node: Json): { node: Json; name?: string } {
    let name: string | undefined;
    for (let i = 0; i < 10 && node; i++) {
      if (typeof node.$ref === 'string') {
        name = node.$ref.split('/').pop();
        node = this.schemas[name!];
        continue;
      }
      if (!node.properties && Array.isArray(node.allOf) && node.allOf.length === 1 && node.allOf[0].$ref) {
        node = node.allOf[0];
        continue;
      }
      break;
    }
    return { node, name };
  }

  private goType(node: Json): string {
    if (!node) return 'interface {}';
    if (node['x-go-type']) return node['x-go-type'];
    if (node.$ref) return goQualified(node.$ref.split('/').pop());
    if (Array.isArray(node.allOf) && node.allOf.length === 1 && node.allOf[0].$ref) return this.goType(node.allOf[0]);
    const t = Array.isArray(node.type) ? node.type[0] : node.type;
    switch (t) {
      case 'integer':
        return 'int';
      case 'number':
        return 'float64';
      case 'string':
        return 'string';
      case 'boolean':
        return 'bool';
      case 'array':
        return `[]${this.goType(node.items)}`;
      case 'object':
        return node.additionalProperties && typeof node.additionalProperties === 'object'
          ? `map[string]${this.goType(node.additionalProperties)}`
          : 'map[string]interface {}';
      default:
        return 'interface {}';
    }
  }

  /** Walks the (unconverted) schema along an ajv instancePath: containing struct, Go field path, Go type. */
  private locate(root: string, segments: string[]): { struct: string; field: string; human: string; node: Json } {
    let cur: Json = { $ref: `#/components/schemas/${root}` };
    let struct = goBare(root);
    const fields: string[] = [];
    let human = '';
    for (const seg of segments) {
      const { node, name } = this.deref(cur);
      if (node?.properties && seg in node.properties) {
        if (name) struct = goBare(name);
        fields.push(seg);
        human += human ? `.${seg}` : seg;
        cur = node.properties[seg];
      } else if (node?.items && /^\d+$/.test(seg)) {
        human += `[${seg}]`;
        cur = node.items;
      } else if (node && typeof node.additionalProperties === 'object') {
        human += human ? `.${seg}` : seg;
        cur = node.additionalProperties;
      } else {
        human += human ? `.${seg}` : seg;
        fields.push(seg);
        cur = undefined;
      }
    }
    return { struct, field: fields.join('.'), human, node: cur };
  }

  private describe(root: string, e: ErrorObject): SpecIssue {
    const segments = e.instancePath
      .split('/')
      .slice(1)
      .map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'));
    const loc = this.locate(root, segments);
    const data = (e as ErrorObject & { data?: unknown }).data;
    let message: string;
    switch (e.keyword) {
      case 'type': {
        const wanted = (e.params as { type: string | string[] }).type;
        let jt = jsonTypeName(data);
        if (jt === 'number' && (wanted === 'integer' || (Array.isArray(wanted) && wanted.includes('integer')))) {
          jt = `number ${String(data)}`;
        }
        if (segments.length === 0) {
          message = `json: cannot unmarshal ${jt} into Go value of type ${GO_ROOT_TYPES[root] ?? `main.${lcFirst(goBare(root))}`}`;
        } else {
          message = `json: cannot unmarshal ${jt} into Go struct field ${loc.struct}.${loc.field} of type ${this.goType(loc.node)}`;
        }
        break;
      }
      case 'enum': {
        const allowed = ((e.params as { allowedValues: unknown[] }).allowedValues ?? []).filter((a) => typeof a === 'string');
        message = `invalid ${loc.human} ${JSON.stringify(data)}: must be one of ${allowed.join(', ')}`;
        break;
      }
      case 'required': {
        const missing = (e.params as { missingProperty: string }).missingProperty;
        message = `missing required field ${loc.human ? `${loc.human}.` : ''}${missing}`;
        break;
      }
      case 'additionalProperties': {
        const extra = (e.params as { additionalProperty: string }).additionalProperty;
        message = `json: unknown field "${loc.human ? `${loc.human}.` : ''}${extra}"`;
        break;
      }
      default:
        message = `invalid ${loc.human || 'body'}: ${e.message ?? e.keyword}`;
    }
    return { path: loc.human, keyword: e.keyword, message };
  }
}

function escapePointer(s: string): string {
  return s.replace(/~/g, '~0').replace(/\//g, '~1');
}

function goBare(schemaName: string): string {
  const i = schemaName.lastIndexOf('.');
  return i >= 0 ? schemaName.slice(i + 1) : schemaName;
}

function goQualified(schemaName: string): string {
  return schemaName.includes('.') ? schemaName : `main.${schemaName}`;
}

function lcFirst(s: string): string {
  return s ? s[0].toLowerCase() + s.slice(1) : s;
}

function jsonTypeName(v: unknown): string {
  if (Array.isArray(v)) return 'array';
  if (v === null) return 'null';
  if (typeof v === 'boolean') return 'bool';
  return typeof v; // string | number | object
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
function convertSchemas(schemas: Record<string, Json>, strict: boolean): Record<string, Json> {
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

// --- module-level helpers --------------------------------------------------------------------------------------------

const cache = new Map<string, FlySpec>();

/** Loads (once per path) and returns the spec. */
export function loadSpec(path = defaultSpecPath()): FlySpec {
  let s = cache.get(path);
  if (!s) {
    s = FlySpec.load(path);
    cache.set(path, s);
  }
  return s;
}

/**
 * Validates a request body against the official spec, the way the simulator does.
 * `operation` is an operationId (`Machines_create`), an alias (`create`, `update`, `stop`, `lease`, `signal`,
 * `metadata`, `metadata_replace`, `exec`, `app_create`) or `{ method, path }` of a recorded request.
 */
export function validateAgainstSpec(
  operation: string | { method: string; path: string },
  body: unknown,
  opts: ValidateOptions = {},
): SpecValidation {
  return loadSpec(opts.specPath).validate(operation, body, opts);
}

/** Validates one recorded request (e.g. an entry of the simulator's request log, or one captured from a client). */
export function validateRecordedRequest(
  req: { method: string; path: string; body?: unknown },
  opts: ValidateOptions = {},
): SpecValidation {
  const spec = loadSpec(opts.specPath);
  const op = spec.findOperation(req.method, req.path);
  if (!op) {
    const message = `no Machines API operation matches ${req.method} ${req.path}`;
    return { ok: false, operationId: '', error: message, issues: [{ path: '', keyword: 'operation', message }] };
  }
  return spec.validate(op.operationId, req.body, opts);
}
