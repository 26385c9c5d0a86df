import { Router } from 'express';
import { z } from 'zod';
import { principalOf, requireScope } from '../http/auth.ts';
import { parseOrThrow } from '../http/validate.ts';
import { type KeyService, MAX_GRACE_SECONDS } from './service.ts';

const accountParams = z.strictObject({
  id: z.string().regex(/^acc_[0-9a-z]{22}$/, 'must be an account id (acc_…)'),
});
const keyParams = z.strictObject({
  keyId: z.string().regex(/^key_[0-9a-z]{22}$/, 'must be a key id (key_…)'),
});
const createBody = z.strictObject({
  name: z.string().trim().min(1).max(100).nullish(),
  expiresAt: z.iso
    .datetime({ offset: true, message: 'must be an RFC 3339 date-time, e.g. 2030-01-31T00:00:00Z' })
    .transform((s) => new Date(s))
    .nullish(),
});
const rotateBody = z.strictObject({
  graceSeconds: z.int().min(0).max(MAX_GRACE_SECONDS).optional(),
});

export function keyRoutes(keys: KeyService): Router {
  const router = Router();
  const scope = requireScope('keys');

  // Both bodies are optional: an empty POST creates an unnamed key or rotates without grace.
  router.post('/accounts/:id/keys', scope, async (req, res) => {
    const { id } = parseOrThrow(accountParams, req.params, 'params');
    const body = parseOrThrow(createBody, req.body ?? {}, 'body');
    res.status(201).json(await keys.create(id, body, principalOf(res)));
  });

  router.get('/accounts/:id/keys', scope, async (req, res) => {
    const { id } = parseOrThrow(accountParams, req.params, 'params');
    res.json({ keys: await keys.list(id) });
  });

  router.delete('/keys/:keyId', scope, async (req, res) => {
    const { keyId } = parseOrThrow(keyParams, req.params, 'params');
    await keys.revoke(keyId, principalOf(res));
    res.status(204).end();
  });

  router.post('/keys/:keyId/rotate', scope, async (req, res) => {
    const { keyId } = parseOrThrow(keyParams, req.params, 'params');
    const body = parseOrThrow(rotateBody, req.body ?? {}, 'body');
    res.status(201).json(await keys.rotate(keyId, body, principalOf(res)));
  });

  return router;
}
