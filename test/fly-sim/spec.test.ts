import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { defaultSpecPath, loadSpec, referenceSpecPath, validateAgainstSpec, validateRecordedRequest } from '../../tools/fly-sim/index.js';

const tmp = mkdtempSync(join(tmpdir(), 'fly-sim-spec-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('validateAgainstSpec', () => {
  it('accepts a valid create and names the field of an invalid one', () => {
    expect(validateAgainstSpec('create', { config: { image: 'x', guest: { cpus: 2, memory_mb: 512 } }, region: 'ord' }).ok).toBe(true);
    const r = validateAgainstSpec('Machines_create', { config: { image: 'x', services: [{ internal_port: '8000' }] } });
    expect(r.ok).toBe(false);
    expect(r.error).toBe('json: cannot unmarshal string into Go struct field MachineService.config.services.internal_port of type int');
    expect(r.issues[0].path).toBe('config.services[0].internal_port');
  });

  it('phrases a non-object stop body exactly as Fly does', () => {
    expect(validateAgainstSpec('stop', []).error).toBe('json: cannot unmarshal array into Go value of type main.stopRequest');
    expect(validateAgainstSpec('stop', undefined).ok).toBe(true);
    expect(validateAgainstSpec('stop', { signal: 'SIGTERM', timeout: '5s' }).ok).toBe(true);
    expect(validateAgainstSpec('stop', { signal: 'SIGFOO' }).error).toMatch(/^invalid signal "SIGFOO": must be one of SIGHUP/);
  });

  it('checks the other bodies: update, lease, signal, metadata, exec, app create', () => {
    expect(validateAgainstSpec('update', { config: { image: 'x' }, current_version: 5 }).error).toBe(
      'json: cannot unmarshal number into Go struct field UpdateMachineRequest.current_version of type string',
    );
    expect(validateAgainstSpec('lease', { ttl: '30' }).error).toBe('json: cannot unmarshal string into Go struct field CreateLeaseRequest.ttl of type int');
    expect(validateAgainstSpec('lease', { ttl: 30, description: 'deploy' }).ok).toBe(true);
    expect(validateAgainstSpec('signal', { signal: 'SIGKILL' }).ok).toBe(true);
    expect(validateAgainstSpec('signal', { signal: 9 }).ok).toBe(true); // §13 dialect
    expect(validateAgainstSpec('signal', { signal: 'KILL' }).ok).toBe(false);
    expect(validateAgainstSpec('metadata', { value: 3 }).ok).toBe(false);
    expect(validateAgainstSpec('metadata_replace', { metadata: { a: 'b' }, machine_version: 'v' }).ok).toBe(true);
    expect(validateAgainstSpec('exec', { cmd: 'ls -la' }).ok).toBe(true); // deprecated dialect
    expect(validateAgainstSpec('exec', { command: 'ls' }).error).toContain('MachineExecRequest.command');
    expect(validateAgainstSpec('app_create', { name: 'a', org_slug: 'personal' }).ok).toBe(true);
  });

  it('accepts unknown fields like Fly, and rejects them in strict mode', () => {
    const body = { config: { image: 'x', imagee: 'typo' }, regoin: 'ord' };
    expect(validateAgainstSpec('create', body).ok).toBe(true);
    const strict = validateAgainstSpec('create', body, { strict: true });
    expect(strict.ok).toBe(false);
    expect(strict.issues.map((i) => i.message).sort()).toEqual(['json: unknown field "config.imagee"', 'json: unknown field "regoin"']);
    // maps (env, metadata) stay open in strict mode
    expect(validateAgainstSpec('create', { config: { image: 'x', env: { ANY: 'x' }, metadata: { k: 'v' } } }, { strict: true }).ok).toBe(true);
  });

  it('treats null fields as absent (Go semantics) and reports required fields', () => {
    expect(validateAgainstSpec('create', { config: { image: 'x', guest: null }, region: null }).ok).toBe(true);
    expect(validateAgainstSpec('create', { config: { image: 'x', statics: [{ url_prefix: '/' }] } }).error).toBe('missing required field config.statics[0].guest_path');
  });

  it('accepts the duration and autostop dialects', () => {
    const cfg = {
      image: 'x',
      stop_config: { timeout: 10_000_000_000 },
      checks: { a: { interval: 15_000_000_000, timeout: '2s' } },
      services: [{ autostop: false, checks: [{ grace_period: 1_000_000_000 }] }],
    };
    expect(validateAgainstSpec('create', { config: cfg }).ok).toBe(true);
    expect(validateAgainstSpec('create', { config: { image: 'x', services: [{ autostop: 'sometimes' }] } }).ok).toBe(false);
  });

  it('requireBody reports a missing required body', () => {
    expect(validateAgainstSpec('lease', undefined).ok).toBe(true);
    expect(validateAgainstSpec('lease', undefined, { requireBody: true }).ok).toBe(false);
  });

  it('maps recorded requests to operations, bodiless ones included', () => {
    expect(validateRecordedRequest({ method: 'POST', path: '/v1/apps/a/machines/0123456789abcd/stop', body: [] }).error).toBe(
      'json: cannot unmarshal array into Go value of type main.stopRequest',
    );
    const ok = validateRecordedRequest({ method: 'GET', path: '/v1/apps/a/machines/0123456789abcd/wait?state=started' });
    expect(ok).toMatchObject({ ok: true, operationId: 'Machines_wait' });
    const none = validateRecordedRequest({ method: 'POST', path: '/v1/nothing/here' });
    expect(none.ok).toBe(false);
    expect(loadSpec().findOperation('POST', '/v1/apps/a/machines/0123456789abcd/metadata/team')?.operationId).toBe('Machines_upsert_metadata');
    expect(() => validateAgainstSpec('no_such_operation', {})).toThrow(/unknown Machines API operation/);
  });
});

describe('spec loading', () => {
  it('bundles a copy identical to the shared reference (when ../shared is present)', () => {
    const ref = referenceSpecPath();
    if (!ref) {
      // CI without ../shared: the bundled copy must still be a Machines API spec
      expect(loadSpec().operations.has('Machines_create')).toBe(true);
      return;
    }
    expect(readFileSync(defaultSpecPath(), 'utf8')).toBe(readFileSync(ref, 'utf8'));
  });

  it('FLY_OPENAPI_SPEC overrides the path, and `nullable` is honoured', () => {
    const file = join(tmp, 'mini.json');
    writeFileSync(
      file,
      JSON.stringify({
        openapi: '3.0.1',
        paths: {
          '/apps/{app_name}/things': {
            post: { operationId: 'Things_create', requestBody: { required: true, content: { 'application/json': { schema: { $ref: '#/components/schemas/Thing' } } } } },
          },
        },
        components: {
          schemas: {
            Thing: {
              type: 'object',
              properties: {
                label: { type: 'string', nullable: true, example: 'x' },
                tags: { type: 'array', items: { type: 'string', nullable: true } },
                codes: { type: 'array', items: { type: 'string' } },
                inner: { $ref: '#/components/schemas/Inner' },
              },
            },
            Inner: { type: 'object', properties: { n: { type: 'integer' } }, required: ['n'] },
          },
        },
      }),
    );
    const before = process.env.FLY_OPENAPI_SPEC;
    process.env.FLY_OPENAPI_SPEC = file;
    try {
      expect(defaultSpecPath()).toBe(file);
      expect(validateAgainstSpec('Things_create', { label: 'a', inner: { n: 1 } }).ok).toBe(true);
      expect(validateAgainstSpec('Things_create', { inner: { n: 'one' } }).error).toBe('json: cannot unmarshal string into Go struct field Inner.inner.n of type int');
      expect(validateAgainstSpec('Things_create', { inner: {} }).error).toBe('missing required field inner.n');
      expect(validateAgainstSpec({ method: 'POST', path: '/v1/apps/x/things' }, { label: 7 }).ok).toBe(false);
      // nulls inside arrays are not stripped: only a nullable item schema accepts them
      expect(validateAgainstSpec('Things_create', { tags: [null, 'a'] }).ok).toBe(true);
      expect(validateAgainstSpec('Things_create', { codes: [null, 'a'] }).ok).toBe(false);
    } finally {
      if (before === undefined) delete process.env.FLY_OPENAPI_SPEC;
      else process.env.FLY_OPENAPI_SPEC = before;
    }
    expect(defaultSpecPath()).not.toBe(file);
  });
});
