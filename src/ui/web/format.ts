import { useEffect, useState } from 'react';
import type { Meta, Status } from './types.js';

/** "12 s ago", "3 min ago" … ; the absolute time goes in a title/dateTime next to it. */
export function ago(iso: string | null, now: number): string {
  if (!iso) return 'never';
  const s = Math.max(0, Math.round((now - Date.parse(iso)) / 1000));
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  return `${Math.floor(s / 86400)} d ago`;
}

export function clock(iso: string): string {
  return new Date(iso).toLocaleString(undefined, { dateStyle: 'short', timeStyle: 'medium' });
}

/** Re-renders every `ms`, for relative times. */
export function useNow(ms = 1000): number {
  const [now, setNow] = useState(() => Date.now());
  useEffect(() => {
    const t = setInterval(() => setNow(Date.now()), ms);
    return () => clearInterval(t);
  }, [ms]);
  return now;
}

export function memory(mb: number): string {
  return mb >= 1024 ? `${+(mb / 1024).toFixed(1)} GB` : `${mb} MB`;
}

export function tierLabel(meta: Meta | null, tier: number): string {
  const t = meta?.tiers.find((x) => x.tier === tier);
  return t ? `${memory(t.memory_mb)} · ${t.cpus} CPU${t.cpus === 1 ? '' : 's'}` : '';
}

/** Colour family of a status (the badge also always says the status in words). */
export function tone(status: Status): 'ok' | 'warn' | 'bad' | 'busy' | 'idle' {
  switch (status) {
    case 'ready':
      return 'ok';
    case 'degraded':
    case 'offline':
      return 'warn';
    case 'failed':
      return 'bad';
    case 'provisioning':
    case 'removing':
      return 'busy';
    default:
      return 'idle';
  }
}
