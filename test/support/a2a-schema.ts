import fs from 'node:fs';
import { Ajv } from 'ajv';
import addFormatsModule from 'ajv-formats';

/** The official A2A v0.3.0 JSON Schema (draft-07), next to the protocol notes. */
export const A2A_V03_SCHEMA = '/work/shared/reference/a2a-v0.3.0.schema.json';

let ajv: Ajv | undefined;

/** Validates a value against one definition of the v0.3.0 schema; returns ajv's errors as text ('' when valid). */
export function v03Errors(definition: string, value: unknown): string {
  if (!ajv) {
    ajv = new Ajv({ allErrors: true, strict: false, validateFormats: true });
    const addFormats = ((addFormatsModule as any).default ?? addFormatsModule) as (a: Ajv) => void;
    addFormats(ajv);
    ajv.addSchema(JSON.parse(fs.readFileSync(A2A_V03_SCHEMA, 'utf8')), 'a2a-v0.3.0');
  }
  const validate = ajv.getSchema(`a2a-v0.3.0#/definitions/${definition}`);
  if (!validate) throw new Error(`no definition ${definition} in the v0.3.0 schema`);
  return validate(value) ? '' : ajv.errorsText(validate.errors, { separator: '\n' });
}

/** Required fields of the v1.0 AgentCard message (a2a-v1.proto, field_behavior REQUIRED). */
export const V1_CARD_REQUIRED = ['name', 'description', 'supportedInterfaces', 'version', 'capabilities', 'defaultInputModes', 'defaultOutputModes', 'skills'];
