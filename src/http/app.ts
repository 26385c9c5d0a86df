import express, { type Express, Router } from 'express';
import { accountRoutes } from '../accounts/routes.ts';
import type { Context } from '../context.ts';
import { detectionRoutes } from '../detection/routes.ts';
import { runRoutes } from '../detection/run-routes.ts';
import { enforcementRoutes } from '../enforce/routes.ts';
import { healthRoutes } from '../health/routes.ts';
import { importRoutes } from '../import/routes.ts';
import { keyRoutes } from '../keys/routes.ts';
import { ruleRoutes } from '../rules/routes.ts';
import { signupRoutes } from '../signup/routes.ts';
import { tokenRoutes } from '../tokens/routes.ts';
import { authenticate } from './auth.ts';
import { jsonBody } from './body.ts';
import { errorHandler, notFound } from './errors.ts';
import { requestContext } from './request-context.ts';

export function createApp(ctx: Context): Express {
  const app = express();
  app.disable('x-powered-by');
  app.set('etag', false);
  app.set('query parser', 'simple');
  app.use(requestContext(ctx.logger, ctx.config.METRICS_ENABLED ? ctx.metrics : null));
  app.use(healthRoutes(ctx));

  const v1 = Router();
  v1.use(authenticate(ctx.tokens));
  // Before the JSON parser: backfill batches are read by their own routes, with larger limits.
  v1.use(importRoutes(ctx.imports));
  v1.use(jsonBody(ctx.config.BODY_LIMIT_BYTES));
  v1.use(tokenRoutes(ctx.tokens));
  v1.use(signupRoutes(ctx.signups));
  v1.use(accountRoutes(ctx.accounts));
  v1.use(ruleRoutes(ctx.rules));
  v1.use(keyRoutes(ctx.apiKeys));
  v1.use(enforcementRoutes({ ...ctx, policy: () => ctx.policy }));
  v1.use(runRoutes(ctx.runs));
  v1.use(detectionRoutes({ ...ctx, policy: () => ctx.policy }));
  app.use('/v1', v1);

  app.use(notFound);
  app.use(errorHandler(ctx.logger));
  return app;
}
