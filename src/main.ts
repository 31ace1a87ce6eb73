import { ConfigError } from './core/config.js';
import { startPlatform } from './platform.js';

try {
  const platform = await startPlatform();
  const graceMs = platform.config.shutdownGraceMs;
  let stopping = false;
  let skipDrain: (() => void) | undefined;
  // SIGTERM (docker stop, compose, Fly, systemd): drain first. A2A calls and streams in flight get up to
  // MOLECULE_SHUTDOWN_GRACE_S to finish while new requests are refused and /healthz says `draining`; then the API
  // closes. Workspaces keep running (the next start, or another replica, adopts them). A second signal stops at once.
  const stop = async (signal: string) => {
    if (stopping) {
      skipDrain?.();
      return;
    }
    stopping = true;
    // Whatever happens below, the process is gone shortly after the grace (orchestrators kill at their own timeout).
    setTimeout(() => process.exit(1), graceMs + 5000).unref();
    if (graceMs > 0) {
      process.stderr.write(`${signal}: draining for up to ${graceMs / 1000} s (new requests get 503), then stopping; workspaces keep running\n`);
      const result = await Promise.race([
        platform.drain(graceMs),
        new Promise<{ drained: boolean; inFlight: number }>((r) => (skipDrain = () => r({ drained: false, inFlight: -1 }))),
      ]);
      if (!result.drained) process.stderr.write(`${signal}: stopping with ${result.inFlight < 0 ? 'the drain skipped' : `${result.inFlight} A2A call(s) still open after the grace`}\n`);
    } else {
      await platform.drain(0);
    }
    process.stderr.write(`${signal}: stopping the platform (workspaces keep running; the next start adopts them)\n`);
    await platform.close();
    process.exit(0);
  };
  process.on('SIGINT', () => void stop('SIGINT'));
  process.on('SIGTERM', () => void stop('SIGTERM'));
} catch (e) {
  if (e instanceof ConfigError) {
    process.stderr.write(`molecule: ${e.message}\n`);
    process.exit(2);
  }
  if ((e as NodeJS.ErrnoException).code === 'EADDRINUSE') {
    process.stderr.write(`molecule: ${(e as Error).message}; set PORT to use another port\n`);
    process.exit(2);
  }
  throw e;
}
