import fs from 'node:fs';
import { afterAll, afterEach } from 'vitest';
import type { PlatformProcess } from './harness.js';

/**
 * When a test of the enclosing block fails, prints the last `lines` lines of the platform's own log after the block
 * (it says why). Call it after the block's afterAll that removes the platform's data dir: after-hooks run
 * last-registered first, so the log is read before that.
 */
export function printPlatformLogOnFailure(platform: () => PlatformProcess | undefined, lines = 20): void {
  let failed = false;
  afterEach(({ task }) => {
    if (task.result?.state === 'fail') failed = true;
  });
  afterAll(() => {
    const p = platform();
    if (failed && p) process.stdout.write(`platform log tail:\n${fs.readFileSync(p.logFile, 'utf8').split('\n').slice(-lines).join('\n')}\n`);
  });
}
