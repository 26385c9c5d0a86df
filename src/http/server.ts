import { createServer, type Server } from 'node:http';
import type { Context } from '../context.ts';
import { createEnforceHandler } from '../enforce/http.ts';
import { createApp } from './app.ts';

/**
 * The HTTP server: the enforcement routes are answered by their node:http fast path (see
 * src/enforce/http.ts for why), everything else by the Express app.
 */
export function createHttpServer(ctx: Context): Server {
  const app = createApp(ctx);
  const fast = createEnforceHandler({
    enforce: ctx.enforce,
    tokens: ctx.tokens,
    metrics: ctx.config.METRICS_ENABLED ? ctx.metrics : null,
    logger: ctx.logger,
    trustedProxies: ctx.trustedProxies,
    deadlineMs: ctx.config.ENFORCE_DEADLINE_MS,
    failMode: () => ctx.policy.enforcement.failMode,
  });
  return createServer((req, res) => {
    if (!fast(req, res)) app(req, res);
  });
}
