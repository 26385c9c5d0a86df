import { Router } from 'express';
import type { Context } from '../context.ts';

export function healthRoutes(ctx: Pick<Context, 'readiness' | 'metrics' | 'config'>): Router {
  const router = Router();

  router.get('/healthz', (_req, res) => {
    res.json({ status: 'ok' });
  });

  router.get('/readyz', async (_req, res) => {
    const checks = await ctx.readiness();
    const down = Object.entries(checks)
      .filter(([, ok]) => !ok)
      .map(([name]) => (name === 'postgres' ? 'PostgreSQL' : 'Redis'));
    if (down.length === 0) {
      res.json({ status: 'ready', checks });
      return;
    }
    res
      .status(503)
      .type('application/problem+json')
      .json({
        type: 'urn:gatehouse:problem:service_unavailable',
        title: 'A dependency is unavailable',
        status: 503,
        code: 'service_unavailable',
        detail: `${down.join(' and ')} unreachable`,
        checks,
      });
  });

  if (ctx.config.METRICS_ENABLED) {
    router.get('/metrics', async (_req, res) => {
      res.type(ctx.metrics.registry.contentType).send(await ctx.metrics.registry.metrics());
    });
  }

  return router;
}
