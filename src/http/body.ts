import express, { type RequestHandler } from 'express';
import { ProblemError } from './problem.ts';

/**
 * JSON bodies only: a body with another media type is a 415, an oversized one a 413 (the parser
 * stops reading at the limit), malformed JSON a 400. Bodies are read after authentication.
 */
export function jsonBody(limitBytes: number): RequestHandler[] {
  const requireJson: RequestHandler = (req, _res, next) => {
    const hasBody = Number(req.get('content-length') ?? 0) > 0 || req.get('transfer-encoding') !== undefined;
    if (hasBody && !req.is('application/json') && !req.is('application/*+json')) {
      throw new ProblemError('unsupported_media_type', { detail: 'Send the body as application/json' });
    }
    next();
  };
  return [
    requireJson,
    express.json({ limit: limitBytes, type: ['application/json', 'application/*+json'], strict: true }),
  ];
}
