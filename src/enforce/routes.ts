import { Router } from 'express';
import { z } from 'zod';
import type { AuditLog } from '../audit/audit.ts';
import type { Db } from '../db/client.ts';
import type { Prisma } from '../generated/prisma/client.ts';
import { principalOf, requireScope } from '../http/auth.ts';
import { ProblemError } from '../http/problem.ts';
import { parseOrThrow } from '../http/validate.ts';
import type { KeyService } from '../keys/service.ts';
import { parseDuration } from '../policy/duration.ts';
import { type Policy, QUOTA_DIMENSIONS } from '../policy/policy.ts';
import type { EmergencySwitch } from './emergency.ts';
import type { EnforceService } from './service.ts';

const idParams = z.strictObject({
  id: z.string().regex(/^acc_[0-9a-z]{22}$/, 'must be an account id (acc_…)'),
});

const windowInput = z
  .strictObject({
    window: z.union([z.string(), z.number()]),
    limit: z.number().int().min(0).max(1_000_000_000),
    buckets: z.number().int().min(1).max(1000).default(60),
  })
  .transform((w, ctx) => {
    const ms = parseDuration(w.window);
    if (ms === null || ms % w.buckets !== 0) {
      ctx.addIssue({
        code: 'custom',
        message: 'must be a duration (90s, 10m, 24h) that divides into buckets',
        path: ['window'],
      });
      return z.NEVER;
    }
    return { window: ms, limit: w.limit, buckets: w.buckets };
  });

const limitsBody = z.strictObject({
  tier: z
    .string()
    .regex(/^[a-z0-9_-]{1,32}$/)
    .optional(),
  /** Replaces the tier's windows for the dimensions given; null removes every override. */
  limits: z
    .strictObject(
      Object.fromEntries(QUOTA_DIMENSIONS.map((d) => [d, z.array(windowInput).max(4).optional()])),
    )
    .nullable()
    .optional(),
});

const emergencyBody = z.strictObject({ factor: z.number().min(0).max(1) });

export function enforcementRoutes(deps: {
  db: Db;
  audit: AuditLog;
  apiKeys: KeyService;
  enforce: EnforceService;
  emergency: EmergencySwitch;
  policy: () => Policy;
}): Router {
  const router = Router();
  const admin = requireScope('admin');

  router.put('/accounts/:id/limits', admin, async (req, res) => {
    const { id } = parseOrThrow(idParams, req.params, 'params');
    const body = parseOrThrow(limitsBody, req.body, 'body');
    if (body.tier && !(body.tier in deps.policy().enforcement.tiers)) {
      throw new ProblemError('validation_failed', {
        errors: [{ field: 'tier', message: 'is not a tier in the policy' }],
      });
    }
    const data: Prisma.AccountUpdateInput = {};
    if (body.tier) data.tier = body.tier;
    if (body.limits !== undefined) {
      const cleaned =
        body.limits === null
          ? null
          : Object.fromEntries(Object.entries(body.limits).filter(([, v]) => v !== undefined));
      data.limitsOverride =
        cleaned === null ? (null as unknown as Prisma.InputJsonValue) : (cleaned as Prisma.InputJsonValue);
    }
    const found = await deps.db.account.findUnique({ where: { id } });
    if (!found) throw new ProblemError('not_found', { detail: `No account ${id}` });
    const account = await deps.db.account.update({ where: { id }, data });
    await deps.audit.record({
      actor: principalOf(res).tokenId,
      action: 'account.limits_changed',
      subjectType: 'account',
      subjectId: id,
      data: body as Prisma.InputJsonValue,
    });
    // Every instance drops its cached copy of the account: the new limits apply on the next call.
    await deps.apiKeys.invalidateAccount(id);
    res.json({ accountId: id, tier: account.tier, limits: account.limitsOverride ?? null });
  });

  router.get('/accounts/:id/usage', requireScope('keys'), async (req, res) => {
    const { id } = parseOrThrow(idParams, req.params, 'params');
    const account = await deps.db.account.findUnique({ where: { id } });
    if (!account) throw new ProblemError('not_found', { detail: `No account ${id}` });
    const keys = await deps.db.apiKey.findMany({
      where: { accountId: id, status: 'active' },
      select: { id: true },
    });
    const limits = await deps.enforce.usage(
      account,
      keys.map((k) => k.id),
    );
    res.json({ accountId: id, tier: account.tier, status: account.status, limits });
  });

  router.get('/enforce/emergency', admin, (_req, res) => {
    res.json({ factor: deps.emergency.factor() });
  });

  router.put('/enforce/emergency', admin, async (req, res) => {
    const { factor } = parseOrThrow(emergencyBody, req.body, 'body');
    await deps.emergency.set(factor, principalOf(res).tokenId);
    res.json({ factor });
  });

  return router;
}
