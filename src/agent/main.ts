/**
 * Entry point of the workspace agent: `node --import tsx src/agent/main.ts` (see launch.ts). Reads the agent
 * contract's environment, starts the agent, and turns signals and "workspace removed" into a clean exit.
 */
import { startAgent } from './agent.js';
import { ConfigError, loadConfig } from './config.js';
import { createLogger } from './logger.js';

async function main(): Promise<void> {
  const bootLogger = createLogger(process.env.LOG_LEVEL?.trim() || 'info');
  let config;
  try {
    config = loadConfig(process.env);
  } catch (err) {
    if (err instanceof ConfigError) {
      bootLogger.fatal({ variable: err.variable }, `cannot start: ${err.message}`);
      process.exit(1);
    }
    throw err;
  }
  const baseLogger = config.logLevel === bootLogger.level ? bootLogger : createLogger(config.logLevel);
  // startAgent adds workspace_id to its own lines; this child does the same for the lines written here.
  const logger = baseLogger.child({ workspace_id: config.workspace.id });

  process.on('uncaughtException', (err) => {
    logger.fatal({ err: err.message, stack: err.stack }, 'uncaught exception');
    process.exit(1);
  });
  process.on('unhandledRejection', (reason) => {
    logger.error({ err: reason instanceof Error ? reason.message : String(reason) }, 'unhandled promise rejection');
  });

  let agent;
  try {
    agent = await startAgent(config, { logger: baseLogger });
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    logger.fatal({ err: e.message, code: e.code, port: config.port, host: config.host }, 'cannot start the agent');
    process.exit(1);
  }

  let exiting = false;
  const shutdown = async (reason: string) => {
    if (exiting) return;
    exiting = true;
    logger.info({ reason }, 'shutdown requested');
    try {
      await agent.close({ graceMs: 5000 });
    } catch (err) {
      logger.error({ err: err instanceof Error ? err.message : String(err) }, 'error during shutdown');
    }
    process.exit(0);
  };
  process.on('SIGTERM', () => void shutdown('SIGTERM'));
  process.on('SIGINT', () => void shutdown('SIGINT'));
  void agent.removed.then(() => shutdown('workspace removed (heartbeat answered 410)'));
}

void main();
