import { Router } from 'express';
import { z } from 'zod';
import { requireScope } from '../http/auth.ts';
import { parseOrThrow } from '../http/validate.ts';
import { isIp } from '../signals/ip.ts';
import type { SignupService } from './service.ts';

// Bounds on every field keep hostile input cheap to refuse; the checks themselves run in the service.
const signupBody = z.strictObject({
  email: z.string().min(1).max(320),
  phone: z.string().min(1).max(40).optional(),
  captchaToken: z.string().min(1).max(8192),
  ip: z.string().max(64).refine(isIp, 'must be an IPv4 or IPv6 address'),
  fingerprint: z.string().min(1).max(256).optional(),
  tlsFingerprint: z.string().min(1).max(256).optional(),
  userAgent: z.string().max(1024).optional(),
  acceptLanguage: z.string().max(256).optional(),
  externalId: z.string().min(1).max(128).optional(),
});

export function signupRoutes(signups: SignupService): Router {
  const router = Router();
  router.post('/signups', requireScope('signup'), async (req, res) => {
    const body = parseOrThrow(signupBody, req.body, 'body');
    const result = await signups.signup(body);
    res.status(201).json(result);
  });
  return router;
}
