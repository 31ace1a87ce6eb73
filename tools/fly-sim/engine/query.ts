/**
 * Query-string readers for list, restart and events. Unlike util's truthyQuery (last value wins, accepts `y`)
 * they read the first value, as those routes always have; merging the two would change what they answer.
 */
export function truthy(v: unknown): boolean {
  const s = first(v);
  return s !== undefined && ['1', 'true', 't', 'yes'].includes(s.toLowerCase());
}

export function first(v: unknown): string | undefined {
  if (Array.isArray(v)) return v.length ? String(v[0]) : undefined;
  return v === undefined || v === null ? undefined : String(v);
}
