/**
 * Validation errors phrased the way Fly's Go server phrases them, naming the field, so a client test sees the
 * text Fly would send:
 *   json: cannot unmarshal string into Go struct field MachineGuest.config.guest.memory_mb of type int
 *   json: cannot unmarshal array into Go value of type main.stopRequest
 * Paths are walked on the unconverted (OpenAPI) schemas: their names and x-go-type hints are what Go reports.
 */
import type { ErrorObject } from 'ajv';
import type { SpecIssue } from './spec.js';

type Json = any; // eslint-disable-line @typescript-eslint/no-explicit-any

/** Go type names for top-level bodies, used in `cannot unmarshal X into Go value of type …`. */
const GO_ROOT_TYPES: Record<string, string> = {
  StopRequest: 'main.stopRequest', // seen verbatim (reference §4)
};

export class GoErrorPhrasing {
  constructor(private readonly schemas: Record<string, Json>) {}

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

  describe(root: string, e: ErrorObject): SpecIssue {
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
