import { type Config, ConfigError, loadConfig } from './config.ts';
import type { Context } from './context.ts';
import type { GatehouseServer } from './http/server.ts';
import { checkPostgres, checkRedis, DependencyError, migrate } from './startup.ts';

// Entry point: `all` (API and workers in one process, migrating first: the quick start),
// `api`, `workers` (production: each scaled on its own) and `migrate`.

type Mode = 'all' | 'api' | 'workers' | 'migrate';

/** One line on stderr, no stack trace, and a non-zero exit. */
function fail(message: string): never {
  process.stderr.write(`gatehouse: ${message}\n`);
  process.exit(1);
}

async function main(): Promise<void> {
  const mode = (process.argv[2] ?? 'all') as Mode;
  if (!['all', 'api', 'workers', 'migrate'].includes(mode))
    fail(`unknown mode "${mode}" (all, api, workers, migrate)`);

  let config: Config;
  try {
    config = loadConfig();
  } catch (err) {
    if (err instanceof ConfigError) fail(`invalid configuration: ${err.message}`);
    throw err;
  }
  if (mode === 'all' || mode === 'api') {
    const { tuneGcForServing } = await import('./gc.ts');
    tuneGcForServing();
  }
  // The stores are checked before the rest of Gatehouse is loaded: a missing one is reported in one
  // line within seconds, not after every module has been compiled and imported.
  const { createLogger } = await import('./logger.ts');
  const logger = createLogger(config.LOG_LEVEL);

  let ctx: Context;
  try {
    if (mode === 'all' || mode === 'migrate') await migrate(config, (msg) => logger.info(msg));
    else await checkPostgres(config);
    if (mode === 'migrate') process.exit(0);
    await checkRedis(config);
    const { createContext } = await import('./context.ts');
    ctx = await createContext(config, { logger });
  } catch (err) {
    if (err instanceof DependencyError || (err as Error).name === 'PolicyError') fail((err as Error).message);
    fail(`start-up failed: ${(err as Error).message?.split('\n')[0] ?? String(err)}`);
  }

  let server: GatehouseServer | undefined;
  let workers: { close(): Promise<void> } | undefined;
  if (mode === 'all' || mode === 'workers') {
    const { startWorkers } = await import('../workers/index.ts');
    workers = await startWorkers(ctx);
  }
  if (mode === 'all' || mode === 'api') {
    const { createHttpServer } = await import('./http/server.ts');
    const s = createHttpServer(ctx);

    server = await new Promise<GatehouseServer>((resolve, reject) => {
      s.once('error', reject);
      s.listen(config.PORT, config.HOST, () => resolve(s));
    }).catch((err: NodeJS.ErrnoException) =>
      fail(`cannot listen on ${config.HOST}:${config.PORT} (${err.code ?? err.message})`),
    );
    // Keep-alive sockets must not outlive a gateway's idea of them, nor hold up a drain for long.
    server.keepAliveTimeout = 65_000;
    const shown = config.HOST === '0.0.0.0' || config.HOST === '::' ? '127.0.0.1' : config.HOST;
    const port = (server.address() as { port: number }).port;
    logger.info(`Gatehouse listening on http://${shown}:${port}`);
    process.stdout.write(
      `Gatehouse ${mode === 'all' ? 'API and workers' : 'API'} ready at http://${shown}:${port}\n`,
    );
  } else {
    process.stdout.write('Gatehouse workers running\n');
  }

  let stopping = false;
  const shutdown = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'draining');
    const force = setTimeout(() => {
      logger.error('drain timed out; exiting');
      process.exit(1);
    }, config.SHUTDOWN_TIMEOUT_MS);
    force.unref();
    if (server) {
      const closed = new Promise<void>((resolve) => server?.close(() => resolve()));
      // Stop accepting at once; idle keep-alive sockets go now, busy ones after their response.
      server.closeIdleConnections();
      await closed;
      await server.drained();
    }
    await workers?.close();
    await ctx.close();
    logger.info('stopped');
    process.exit(0);
  };
  process.on('SIGTERM', () => void shutdown('SIGTERM'));
  process.on('SIGINT', () => void shutdown('SIGINT'));
}

main().catch((err: unknown) =>
  fail(`start-up failed: ${(err as Error)?.message?.split('\n')[0] ?? String(err)}`),
);
