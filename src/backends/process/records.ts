import fs from 'node:fs';
import path from 'node:path';

/** What survives a platform restart: enough to find, check and stop the child again. */
export interface PidRecord {
  instanceId: string;
  workspaceId: string;
  pid: number | null;
  port: number;
  startedAt: string;
  lastExit?: { code: number | null; signal: string | null; at: string; oom: boolean };
}

/** The files an instance keeps in the data dir: `process/<id>.json` (its pid record) and `logs/<id>.log`. */
export class InstanceFiles {
  private readonly recordsDir: string;
  readonly logsDir: string;

  constructor(dataDir: string) {
    this.recordsDir = path.join(dataDir, 'process');
    this.logsDir = path.join(dataDir, 'logs');
    fs.mkdirSync(this.recordsDir, { recursive: true });
    fs.mkdirSync(this.logsDir, { recursive: true });
  }

  /** Instance ids with a pid record. */
  recorded(): string[] {
    return fs
      .readdirSync(this.recordsDir)
      .filter((f) => f.endsWith('.json'))
      .map((f) => f.slice(0, -5));
  }

  read(instanceId: string): PidRecord | undefined {
    try {
      return JSON.parse(fs.readFileSync(this.recordFile(instanceId), 'utf8')) as PidRecord;
    } catch {
      return undefined;
    }
  }

  /** Atomically: a platform killed mid-write must not leave a record that names no one. */
  write(rec: PidRecord): void {
    const file = this.recordFile(rec.instanceId);
    fs.writeFileSync(`${file}.tmp`, JSON.stringify(rec));
    fs.renameSync(`${file}.tmp`, file);
  }

  logFile(instanceId: string): string {
    return path.join(this.logsDir, `${instanceId}.log`);
  }

  appendLog(instanceId: string, line: string): void {
    try {
      fs.appendFileSync(this.logFile(instanceId), `${line}\n`);
    } catch {
      /* log dir gone (destroyed) */
    }
  }

  remove(instanceId: string): void {
    fs.rmSync(this.recordFile(instanceId), { force: true });
    fs.rmSync(this.logFile(instanceId), { force: true });
  }

  private recordFile(instanceId: string): string {
    return path.join(this.recordsDir, `${instanceId}.json`);
  }
}
