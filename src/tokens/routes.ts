import { Router } from 'express';
import { z } from 'zod';
import { principalOf, requireScope } from '../http/auth.ts';
import { ProblemError } from '../http/problem.ts';
import { parseOrThrow } from '../http/validate.ts';
import { SCOPES } from './scopes.ts';
import type { TokenService } from './service.ts';

const createBody = z.strictObject({
  name: z.string().trim().min(1).max(100),
  scopes: z.array(z.enum(SCOPES)).min(1).max(SCOPES.length),
});
const idParams = z.strictObject({ id: z.string().regex(/^tok_[0-9a-z]{22}$/, 'must be a token id (tok_…)') });

export function tokenRoutes(tokens: TokenService): Router {
  const router = Router();
  const admin = requireScope('admin');

  router.post('/tokens', admin, async (req, res) => {
    const body = parseOrThrow(createBody, req.body, 'body');
    const created = await tokens.create(body, principalOf(res));
    res.status(201).json(created);
  });

  router.get('/tokens', admin, async (_req, res) => {
    res.json({ tokens: await tokens.list() });
  });

  router.delete('/tokens/:id', admin, async (req, res) => {
    const { id } = parseOrThrow(idParams, req.params, 'params');
    if (!(await tokens.revoke(id, principalOf(res)))) {
      throw new ProblemError('not_found', { detail: `No token ${id}` });
    }
    res.status(204).end();
  });

  return router;
}
