import { randomUUID } from 'node:crypto';
import type { RequestHandler, Response } from 'express';
import type { Logger } from '../logger.ts';
import type { HttpMetrics } from './metrics.ts';

const VALID_ID = /^[A-Za-z0-9._:-]{1,128}$/;

export const requestIdOf = (res: Response): string | undefined => res.locals.requestId as string | undefined;

/**
 * Gives each request an id (the caller's `X-Request-Id` when well-formed), and logs and counts it once
 * it finishes. The log line holds method, route, status and timing: never headers, bodies or query
 * strings, which may carry keys, tokens or codes.
 */
export function requestContext(logger: Logger, metrics: HttpMetrics | null): RequestHandler {
  return (req, res, next) => {
    const incoming = req.get('x-request-id');
    const id = incoming && VALID_ID.test(incoming) ? incoming : randomUUID();
    res.locals.requestId = id;
    res.setHeader('X-Request-Id', id);
    const started = process.hrtime.bigint();
    res.on('finish', () => {
      const seconds = Number(process.hrtime.bigint() - started) / 1e9;
      const route = req.route?.path ? `${req.baseUrl}${String(req.route.path)}` : 'unmatched';
      metrics?.observe(req.method, route, res.statusCode, seconds);
      const level = res.statusCode >= 500 ? 'error' : 'info';
      logger[level](
        {
          reqId: id,
          method: req.method,
          route,
          path: req.path,
          status: res.statusCode,
          ms: Math.round(seconds * 1e4) / 10,
        },
        'request',
      );
    });
    next();
  };
}
