/**
 * npm run fly-sim -- [--port 4280] [--proxy-port 4281] [--host 127.0.0.1] [--token sim-token]
 *                    [--no-rate-limits] [--region ord] [--slow-boot-ms N] [--light] [--quiet]
 *
 * Env: FLY_SIM_PORT, FLY_SIM_PROXY_PORT, FLY_SIM_HOST, FLY_SIM_TOKEN, FLY_OPENAPI_SPEC.
 */
import { parseArgs } from 'node:util';
import { startFlySim, type FlySim } from './index.js';

function fail(msg: string): never {
  process.stderr.write(`fly-sim: ${msg}\n`);
  process.exit(2);
}

function portArg(v: string | undefined, name: string, dflt: number): number {
  if (v === undefined || v === '') return dflt;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0 || n > 65535) fail(`${name} must be a port number (0-65535), got ${JSON.stringify(v)}`);
  return n;
}

async function main(): Promise<void> {
  let values;
  try {
    ({ values } = parseArgs({
      options: {
        port: { type: 'string' },
        'proxy-port': { type: 'string' },
        host: { type: 'string' },
        token: { type: 'string' },
        region: { type: 'string' },
        'slow-boot-ms': { type: 'string' },
        'no-rate-limits': { type: 'boolean', default: false },
        light: { type: 'boolean', default: false },
        quiet: { type: 'boolean', default: false },
        help: { type: 'boolean', short: 'h', default: false },
      },
      allowPositionals: false,
    }));
  } catch (e) {
    fail(`${(e as Error).message} (try --help)`);
  }
  if (values.help) {
    process.stdout.write(
      [
        'Usage: npm run fly-sim -- [options]',
        '  --port N            Machines API port (env FLY_SIM_PORT, default 4280)',
        '  --proxy-port N      proxy stand-in port (env FLY_SIM_PROXY_PORT, default API port + 1)',
        '  --host H            listen address (env FLY_SIM_HOST, default 127.0.0.1)',
        '  --token T           accepted API token (env FLY_SIM_TOKEN, default sim-token)',
        '  --region R          default region for creates (default ord)',
        '  --slow-boot-ms N    extra time every machine spends in `starting`',
        '  --no-rate-limits    disable Fly\'s token buckets (on by default)',
        '  --light             run each machine\'s agent inside the simulator (a few KB each) instead of as a process',
        '  --quiet             do not print requests and machine output',
        '',
      ].join('\n'),
    );
    return;
  }
  const port = portArg(values.port ?? process.env.FLY_SIM_PORT, 'port', 4280);
  const proxyPort = portArg(values['proxy-port'] ?? process.env.FLY_SIM_PROXY_PORT, 'proxy port', port === 0 ? 0 : port + 1);
  const slow = values['slow-boot-ms'];
  if (slow !== undefined && !(Number(slow) >= 0)) fail('--slow-boot-ms must be a number >= 0');
  const quiet = values.quiet;

  let sim: FlySim;
  try {
    sim = await startFlySim({
      port,
      proxyPort,
      host: values.host ?? process.env.FLY_SIM_HOST ?? '127.0.0.1',
      token: values.token ?? process.env.FLY_SIM_TOKEN ?? 'sim-token',
      defaultRegion: values.region,
      rateLimits: !values['no-rate-limits'],
      light: values.light,
      timing: slow !== undefined ? { slowBootMs: Number(slow) } : undefined,
      onRequestLogged: quiet
        ? undefined
        : (e) => process.stdout.write(`${e.method} ${e.url} → ${e.status} (${e.durationMs} ms)\n`),
      onMachineLog: quiet ? undefined : (id, l) => process.stdout.write(`  [${id}] ${l.message}\n`),
    });
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    fail(code === 'EADDRINUSE' ? `port in use (${(e as Error).message}); choose another with --port / FLY_SIM_PORT` : (e as Error).message);
  }

  process.stdout.write(
    [
      `fly-sim: Fly Machines API simulator on ${sim.url} (paths under /v1), proxy stand-in on ${sim.proxyUrl}`,
      '',
      'Environment for a platform (CONTAINER_BACKEND=flyio):',
      `  export FLY_FLAPS_BASE_URL=${sim.url}`,
      `  export FLY_API_TOKEN=${sim.token}`,
      `  export FLY_PROXY_URL=${sim.proxyUrl}   # reach a machine: header fly-force-instance-id: <machine id>`,
      '',
      'Try:',
      `  curl -s -H "Authorization: Bearer ${sim.token}" ${sim.url}/v1/apps/my-app/machines | jq`,
      `  curl -s ${sim.proxyUrl}/`,
      `Agents: ${values.light ? 'light (inside this process; no pid, no port)' : 'child processes'}.`,
      `Rate limits: ${sim.engine.rateLimitsEnabled ? 'on (Fly\'s published buckets)' : 'off'}. Faults: POST ${sim.url}/__sim/faults (see tools/fly-sim/README.md).`,
      'Ctrl-C stops the simulator and every machine process.',
      '',
    ].join('\n'),
  );

  let stopping = false;
  const shutdown = async (sig: string) => {
    if (stopping) return;
    stopping = true;
    const light = sim.engine.lightAgents();
    process.stdout.write(`\nfly-sim: ${sig}, stopping ${sim.pids().length} machine process(es)${light ? ` and ${light} light agent(s)` : ''}\n`);
    await sim.close();
    process.exit(0);
  };
  process.on('SIGINT', () => void shutdown('SIGINT'));
  process.on('SIGTERM', () => void shutdown('SIGTERM'));
  process.on('uncaughtException', (e) => {
    process.stderr.write(`fly-sim: uncaught exception: ${e.stack ?? e}\n`);
    void sim.close().finally(() => process.exit(1));
  });
}

void main();
