import type { RequestHandler, Response } from 'express';
import { hasScope, type Principal, type Scope } from '../tokens/scopes.ts';
import type { TokenService } from '../tokens/service.ts';
import { ProblemError } from './problem.ts';

export const principalOf = (res: Response): Principal => {
  const p = res.locals.principal as Principal | undefined;
  if (!p) throw new Error('route reached without authentication');
  return p;
};

/**
 * Authenticates every /v1 call before its body is read. Most callers send
 * `Authorization: Bearer <token>`; a gateway's forward-auth subrequest carries the end user's key in
 * `Authorization`, so there the gateway's own token travels in `X-Gatehouse-Token`.
 */
export function authenticate(
  tokens: TokenService,
  opts: { gatewayPaths: readonly string[] },
): RequestHandler {
  return async (req, res, next) => {
    let bearer: string | undefined;
    if (opts.gatewayPaths.includes(req.path)) {
      bearer = req.get('x-gatehouse-token') ?? undefined;
    } else {
      const header = req.get('authorization');
      const match = header ? /^Bearer\s+(\S+)\s*$/i.exec(header) : null;
      bearer = match?.[1];
    }
    if (!bearer) {
      throw new ProblemError('unauthenticated', {
        detail: 'Send a service token as Authorization: Bearer <token>',
        headers: { 'WWW-Authenticate': 'Bearer realm="gatehouse"' },
      });
    }
    const principal = await tokens.authenticate(bearer);
    if (!principal) {
      throw new ProblemError('unauthenticated', {
        detail: 'The service token is unknown or revoked',
        headers: { 'WWW-Authenticate': 'Bearer realm="gatehouse", error="invalid_token"' },
      });
    }
    res.locals.principal = principal;
    next();
  };
}

/** Route guard: the authenticated token must carry `scope` (or `admin`). */
export function requireScope(...scopes: Scope[]): RequestHandler {
  return (_req, res, next) => {
    const principal = principalOf(res);
    if (!scopes.some((s) => hasScope(principal, s))) {
      throw new ProblemError('forbidden', {
        detail: `This call needs the ${scopes.join(' or ')} scope`,
        headers: {
          'WWW-Authenticate': `Bearer realm="gatehouse", error="insufficient_scope", scope="${scopes.join(' ')}"`,
        },
      });
    }
    next();
  };
}
