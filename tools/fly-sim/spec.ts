/**
 * Request-body validation against the official Machines API OpenAPI 3.0 spec (converted for ajv in
 * spec-schema.ts; errors phrased like Fly's in spec-errors.ts).
 *
 * Unknown fields: the spec never sets `additionalProperties: false`, and Fly's server (Go `encoding/json`) ignores
 * unknown fields, so by default unknown fields are accepted — exactly like Fly. `{ strict: true }` rejects them
 * (`json: unknown field "…"`): use it in tests of *our* client, where an unknown field is almost always a typo
 * that Fly would silently drop.
 *
 * JSON `null` for a field is accepted (Go leaves the field at its zero value), so nulls are stripped before
 * validation, in strict mode too.
 */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, isAbsolute, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Ajv, type ValidateFunction } from 'ajv';
import addFormatsModule from 'ajv-formats';
import { GoErrorPhrasing } from './spec-errors.js';
import { applyDialectPatches, convertSchemas, escapePointer, stripNulls } from './spec-schema.js';

export { DIALECT_PATCHES, stripNulls } from './spec-schema.js';

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

export class FlySpec {
  readonly doc: Json;
  readonly schemas: Record<string, Json>;
  readonly operations = new Map<string, OperationInfo>();
  private readonly templates: Array<{ op: OperationInfo; re: RegExp; literals: number }> = [];
  private readonly ajv: Record<'lenient' | 'strict', Ajv | undefined> = { lenient: undefined, strict: undefined };
  private readonly compiled = new Map<string, ValidateFunction>();
  private readonly errors: GoErrorPhrasing;

  constructor(
    readonly path: string,
    raw: Json,
  ) {
    this.doc = raw;
    this.schemas = raw.components?.schemas ?? {};
    applyDialectPatches(this.schemas);
    this.errors = new GoErrorPhrasing(this.schemas);
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
      .map((e) => this.errors.describe(op.bodySchema!, e));
    const unique = issues.filter((i, n) => issues.findIndex((j) => j.message === i.message) === n);
    return { ok: false, operationId: op.operationId, error: unique[0]?.message, issues: unique };
  }
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
