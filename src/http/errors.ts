import type { ErrorRequestHandler, RequestHandler, Response } from 'express';
import type { Logger } from '../logger.ts';
import { PROBLEMS, ProblemError } from './problem.ts';
import { requestIdOf } from './request-context.ts';

export function sendProblem(res: Response, problem: ProblemError): void {
  for (const [name, value] of Object.entries(problem.headers)) res.setHeader(name, value);
  res
    .status(problem.status)
    .type('application/problem+json')
    .json(problem.body(requestIdOf(res)));
}

export const notFound: RequestHandler = (req, _res, next) => {
  next(new ProblemError('not_found', { detail: `No route for ${req.method} ${req.path}` }));
};

/** Errors raised by body-parser carry a `type`; map each to its problem. */
function fromBodyParser(err: { type?: unknown; status?: unknown }): ProblemError | null {
  switch (err.type) {
    case 'entity.too.large':
      return new ProblemError('payload_too_large');
    case 'entity.parse.failed':
      return new ProblemError('malformed_json');
    case 'encoding.unsupported':
    case 'charset.unsupported':
      return new ProblemError('unsupported_media_type', { detail: 'Use UTF-8 encoded application/json' });
    case 'request.aborted':
    case 'request.size.invalid':
    case 'stream.encoding.set':
      return new ProblemError('validation_failed', { detail: 'The request body could not be read' });
    default:
      return null;
  }
}

const DEPENDENCY_CODES = new Set([
  'ECONNREFUSED',
  'ETIMEDOUT',
  'ECONNRESET',
  'ENOTFOUND',
  'EHOSTUNREACH',
  'P1001',
]);

/** Names the store behind a connection failure, so the answer is a clear 503 and not a 500. */
export function dependencyDown(err: unknown): 'PostgreSQL' | 'Redis' | null {
  if (!(err instanceof Error)) return null;
  const name = err.name;
  const code = (err as { code?: unknown }).code;
  const text = `${name} ${err.message}`;
  if (
    name === 'MaxRetriesPerRequestError' ||
    /Connection is closed|Command timed out|Stream isn't writeable/.test(text)
  ) {
    return 'Redis';
  }
  if (
    name === 'DriverAdapterError' ||
    /DatabaseNotReachable|Can't reach database|Connection terminated|timeout exceeded when trying to connect/i.test(
      text,
    ) ||
    (typeof code === 'string' && DEPENDENCY_CODES.has(code))
  ) {
    return 'PostgreSQL';
  }
  return null;
}

export function errorHandler(logger: Logger): ErrorRequestHandler {
  return (err: unknown, req, res, _next) => {
    let problem: ProblemError;
    if (err instanceof ProblemError) {
      problem = err;
    } else if (err && typeof err === 'object' && fromBodyParser(err)) {
      problem = fromBodyParser(err)!;
    } else {
      const dep = dependencyDown(err);
      if (dep) {
        logger.warn(
          { reqId: requestIdOf(res), err: { name: (err as Error).name, message: (err as Error).message } },
          `${dep} unavailable`,
        );
        problem = new ProblemError('service_unavailable', {
          detail: `${dep} is unavailable; try again shortly`,
          headers: { 'Retry-After': '1' },
        });
      } else {
        logger.error({ reqId: requestIdOf(res), method: req.method, path: req.path, err }, 'unhandled error');
        problem = new ProblemError('internal_error', {
          detail: 'An unexpected error occurred; it has been logged',
        });
      }
    }
    if (res.headersSent) {
      res.end();
      return;
    }
    sendProblem(res, problem);
  };
}

export { PROBLEMS };
