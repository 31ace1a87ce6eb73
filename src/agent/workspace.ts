/**
 * Who this agent is. One snapshot feeds the healthz body, the built-in responder, the model's system prompt and
 * the `get_workspace_info` tool, so all four always agree.
 */
export interface WorkspaceIdentity {
  id: string;
  name: string;
  role: string;
  region: string;
  tier: number;
  runtime: string;
}

export interface WorkspaceSnapshot extends WorkspaceIdentity {
  uptime_s: number;
}

export class Workspace {
  private readonly startedAt: number;

  constructor(
    readonly identity: WorkspaceIdentity,
    startedAt: number = Date.now(),
  ) {
    this.startedAt = startedAt;
  }

  /** Whole seconds: heartbeats and answers do not need sub-second precision. */
  uptimeS(now: number = Date.now()): number {
    return Math.max(0, Math.floor((now - this.startedAt) / 1000));
  }

  snapshot(): WorkspaceSnapshot {
    return { ...this.identity, uptime_s: this.uptimeS() };
  }
}

export function formatDuration(totalSeconds: number): string {
  const s = Math.max(0, Math.floor(totalSeconds));
  const days = Math.floor(s / 86_400);
  const hours = Math.floor((s % 86_400) / 3600);
  const minutes = Math.floor((s % 3600) / 60);
  const seconds = s % 60;
  const parts: string[] = [];
  if (days) parts.push(`${days}d`);
  if (hours) parts.push(`${hours}h`);
  if (minutes) parts.push(`${minutes}m`);
  if (seconds || parts.length === 0) parts.push(`${seconds}s`);
  return parts.join(' ');
}
