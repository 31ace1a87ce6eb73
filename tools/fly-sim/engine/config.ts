/**
 * Checks of a machine config that the schema cannot express (image, guest limits, durations, restart, ports).
 * They also normalise (size presets, default guest, autostop booleans), so every later reader of a version's
 * config sees one shape, whichever dialect the client sent.
 */
import { stripNulls } from '../spec.js';
import { deepClone, GUEST_LIMITS, normalizeSignal, parseGoDuration, presetGuest } from '../util.js';
import { err, type Json } from './types.js';

export function normalizeConfig(cfgIn: unknown): Json {
  const cfg: Json = deepClone(stripNulls(cfgIn ?? {})) ?? {};
  if (typeof cfg.image !== 'string' || cfg.image.trim() === '') throw err(400, 'invalid config.image, image is required');
  let guest: Json = cfg.guest;
  if (!guest || Object.keys(guest).length === 0) {
    if (cfg.size !== undefined) {
      const p = presetGuest(String(cfg.size));
      if (!p) throw err(400, `invalid config.size, unknown machine size "${cfg.size}"`);
      guest = p;
    } else guest = {};
  }
  const kind = guest.cpu_kind || 'shared';
  const limits = GUEST_LIMITS[kind];
  if (!limits) throw err(400, `invalid config.guest.cpu_kind, "${kind}" is not one of shared, performance`);
  const cpus = guest.cpus || 1;
  if (!limits.cpus.includes(cpus)) {
    throw err(400, `invalid config.guest.cpus, ${kind} machines support ${limits.cpus.join(', ')} CPUs, not ${cpus}`);
  }
  const min = limits.minPerCpu * cpus;
  const max = limits.maxPerCpu * cpus;
  const mem = guest.memory_mb || min;
  if (mem < min) throw err(400, `invalid config.guest.memory_mb, minimum required ${min} MiB`);
  if (mem > max) throw err(400, `invalid config.guest.memory_mb, cannot exceed ${max} MiB`);
  if (mem % 256 !== 0) throw err(400, 'invalid config.guest.memory_mb, must be a multiple of 256 MiB');
  cfg.guest = { ...guest, cpu_kind: kind, cpus, memory_mb: mem };
  const dur = (v: unknown, path: string) => {
    if (v === undefined) return;
    const d = parseGoDuration(v);
    if (d instanceof Error) throw err(400, `invalid ${path}: ${d.message}`);
  };
  dur(cfg.stop_config?.timeout, 'config.stop_config.timeout');
  for (const [name, c] of Object.entries<Json>(cfg.checks ?? {})) {
    for (const k of ['interval', 'timeout', 'grace_period']) dur(c?.[k], `config.checks.${name}.${k}`);
  }
  (cfg.services ?? []).forEach((s: Json, i: number) => {
    if (s.internal_port !== undefined && (s.internal_port < 1 || s.internal_port > 65535)) {
      throw err(400, `invalid config.services[${i}].internal_port, must be between 1 and 65535`);
    }
    for (const c of s.checks ?? []) for (const k of ['interval', 'timeout', 'grace_period']) dur(c?.[k], `config.services[${i}].checks.${k}`);
    // The API answers with booleans for "off"/"stop" (backward compatibility, per the spec's description).
    if (s.autostop === 'off') s.autostop = false;
    else if (s.autostop === 'stop') s.autostop = true;
  });
  if (cfg.restart?.max_retries !== undefined && cfg.restart.max_retries < 0) {
    throw err(400, 'invalid config.restart.max_retries, must be >= 0');
  }
  if (cfg.stop_config?.signal !== undefined && !normalizeSignal(cfg.stop_config.signal)) {
    throw err(400, `invalid config.stop_config.signal "${cfg.stop_config.signal}"`);
  }
  cfg.init ??= {};
  return cfg;
}

export function internalPortOf(cfg: Json): number {
  const svc = (cfg.services ?? []).find((s: Json) => typeof s.internal_port === 'number');
  if (svc) return svc.internal_port;
  const chk = Object.values<Json>(cfg.checks ?? {}).find((c) => typeof c?.port === 'number');
  if (chk) return chk.port;
  const envPort = Number(cfg.env?.PORT);
  return Number.isInteger(envPort) && envPort > 0 ? envPort : 8000;
}
