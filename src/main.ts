import { ConfigError } from './core/config.js';
import { startPlatform } from './platform.js';

try {
  const platform = await startPlatform();
  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
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
