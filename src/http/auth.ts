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
 * Authenticates every /v1 call before its body is read (`Authorization: Bearer <token>`). The
 * enforcement routes authenticate on their own fast path (src/enforce/http.ts), where a gateway's
 * forward-auth subrequest carries its token in X-Gatehouse-Token.
 */
export function authenticate(tokens: TokenService): RequestHandler {
  return async (req, res, next) => {
    const header = req.get('authorization');
    const bearer = header ? /^Bearer\s+(\S+)\s*$/i.exec(header)?.[1] : undefined;
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
