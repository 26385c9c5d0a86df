import { Router } from 'express';
import { z } from 'zod';
import { requireScope } from '../http/auth.ts';
import { parseOrThrow } from '../http/validate.ts';
import type { AccountService } from './service.ts';

const idParams = z.strictObject({
  id: z.string().regex(/^acc_[0-9a-z]{22}$/, 'must be an account id (acc_…)'),
});
const listQuery = z.strictObject({ externalId: z.string().min(1).max(128) });
const tokenBody = z.strictObject({ token: z.string().min(1).max(256) });
const phoneBody = z.strictObject({ phone: z.string().min(1).max(40) });
const codeBody = z.strictObject({ code: z.string().regex(/^\d{6}$/, 'must be the 6-digit code') });

export function accountRoutes(accounts: AccountService): Router {
  const router = Router();
  const reader = requireScope('signup', 'keys');
  const signup = requireScope('signup');

  router.get('/accounts', reader, async (req, res) => {
    const { externalId } = parseOrThrow(listQuery, req.query, 'query');
    res.json({ accounts: await accounts.findByExternalId(externalId) });
  });

  router.get('/accounts/:id', reader, async (req, res) => {
    const { id } = parseOrThrow(idParams, req.params, 'params');
    res.json(await accounts.get(id));
  });

  router.post('/accounts/:id/verify-email', signup, async (req, res) => {
    const { id } = parseOrThrow(idParams, req.params, 'params');
    const { token } = parseOrThrow(tokenBody, req.body, 'body');
    res.json(await accounts.verifyEmail(id, token));
  });

  router.post('/accounts/:id/verify-email/resend', signup, async (req, res) => {
    const { id } = parseOrThrow(idParams, req.params, 'params');
    res.status(202).json(await accounts.resendEmail(id));
  });

  router.post('/accounts/:id/phone', signup, async (req, res) => {
    const { id } = parseOrThrow(idParams, req.params, 'params');
    const { phone } = parseOrThrow(phoneBody, req.body, 'body');
    res.status(202).json(await accounts.startPhone(id, phone));
  });

  router.post('/accounts/:id/phone/verify', signup, async (req, res) => {
    const { id } = parseOrThrow(idParams, req.params, 'params');
    const { code } = parseOrThrow(codeBody, req.body, 'body');
    res.json(await accounts.verifyPhone(id, code));
  });

  return router;
}
