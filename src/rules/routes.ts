import { Router } from 'express';
import { z } from 'zod';
import { principalOf, requireScope } from '../http/auth.ts';
import { ProblemError } from '../http/problem.ts';
import { parseOrThrow } from '../http/validate.ts';
import { RULE_KINDS, RULE_MODES, type RuleService } from './service.ts';

// The kind-specific checks on `value` (and the canonical spelling) live in the service, which
// answers with the field at fault; here only the shape of the request is checked.
const createBody = z.strictObject({
  kind: z.enum(RULE_KINDS),
  mode: z.enum(RULE_MODES),
  value: z.union([z.string().max(300), z.int()], 'must be a string (or an integer for asn)'),
  note: z.string().trim().max(500).nullish(),
  expiresAt: z.iso
    .datetime({ offset: true, message: 'must be an RFC 3339 date-time, e.g. 2030-01-31T00:00:00Z' })
    .transform((s) => new Date(s))
    .nullish(),
});
const listQuery = z.strictObject({
  kind: z.enum(RULE_KINDS).optional(),
  mode: z.enum(RULE_MODES).optional(),
});
const idParams = z.strictObject({ id: z.string().regex(/^rul_[0-9a-z]{22}$/, 'must be a rule id (rul_…)') });

export function ruleRoutes(rules: RuleService): Router {
  const router = Router();
  const admin = requireScope('admin');

  router.post('/rules', admin, async (req, res) => {
    const body = parseOrThrow(createBody, req.body, 'body');
    const result = await rules.create(body, principalOf(res));
    if (!result.ok) {
      if (result.code === 'conflict') throw new ProblemError('conflict', { detail: result.message });
      throw new ProblemError('validation_failed', {
        detail: `Invalid body: ${result.field}`,
        errors: [{ field: result.field, message: result.message }],
      });
    }
    res.status(201).json(result.rule);
  });

  router.get('/rules', admin, async (req, res) => {
    const filter = parseOrThrow(listQuery, req.query, 'query');
    res.json({ rules: await rules.list(filter) });
  });

  router.delete('/rules/:id', admin, async (req, res) => {
    const { id } = parseOrThrow(idParams, req.params, 'params');
    if (!(await rules.remove(id, principalOf(res)))) {
      throw new ProblemError('not_found', { detail: `No rule ${id}` });
    }
    res.status(204).end();
  });

  return router;
}
