/** Plain-text tables and times for a terminal; `--json` bypasses all of this. */

export function table(headers: string[], rows: string[][]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i])))
      .join('  ')
      .trimEnd();
  return [line(headers), ...rows.map(line)].join('\n');
}

/** "12s ago", "3m ago", "2h ago", "4d ago"; "-" for never. */
export function ago(iso: string | null | undefined, now = Date.now()): string {
  if (!iso) return '-';
  const s = Math.max(0, Math.round((now - Date.parse(iso)) / 1000));
  if (s < 60) return `${s}s ago`;
  if (s < 3600) return `${Math.floor(s / 60)}m ago`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ago`;
  return `${Math.floor(s / 86400)}d ago`;
}

export function statusText(ws: { status: string; status_reason: string | null; needs_restart?: boolean }): string {
  const base =
    ws.status === 'sleeping' ? `sleeping, wakes on message${ws.status_reason ? ` (${ws.status_reason})` : ''}` : ws.status_reason && ws.status !== 'ready' ? `${ws.status} (${ws.status_reason})` : ws.status;
  return ws.needs_restart ? `${base}, needs restart` : base;
}

/** One line per platform event: time, type, and what changed. */
export function eventLine(ev: { at: string; type: string; workspace_id: string | null; data: Record<string, unknown> }, withWorkspace = false): string {
  const d = ev.data ?? {};
  let what: string;
  if (ev.type === 'workspace.status') what = `${d.from ?? '-'} → ${d.to}${d.reason ? `  (${d.reason})` : ''}`;
  else if (ev.type === 'workspace.step') {
    const { step, ...rest } = d;
    what = `${step}${Object.keys(rest).length ? '  ' + compact(rest) : ''}`;
  } else what = compact(d);
  const who = withWorkspace && ev.workspace_id ? `${ev.workspace_id.slice(0, 8)}  ` : '';
  return `${ev.at}  ${who}${ev.type.replace(/^workspace\./, '').padEnd(9)}  ${what}`;
}

function compact(o: Record<string, unknown>): string {
  return Object.entries(o)
    .filter(([, v]) => v !== null && v !== undefined)
    .map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`)
    .join(' ');
}
