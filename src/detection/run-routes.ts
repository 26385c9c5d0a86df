import { Router } from 'express';
import { z } from 'zod';
import { principalOf, requireScope } from '../http/auth.ts';
import { ProblemError } from '../http/problem.ts';
import { parseOrThrow } from '../http/validate.ts';
import type { RunService } from './runs.ts';

const startBody = z
  .strictObject({
    asOf: z.iso.datetime({ offset: true, message: 'must be an RFC 3339 date-time' }).optional(),
    wait: z.boolean().optional(),
  })
  .optional();
const idParams = z.strictObject({ id: z.string().regex(/^run_[0-9a-z]{22}$/, 'must be a run id (run_…)') });
const WAIT_MS = 5 * 60_000;

export function runRoutes(runs: RunService): Router {
  const router = Router();
  const admin = requireScope('admin');

  router.post('/analysis/runs', admin, async (req, res) => {
    const body = parseOrThrow(startBody, req.body, 'body') ?? {};
    const started = await runs.start(principalOf(res).tokenId, body.asOf ? new Date(body.asOf) : null);
    const view = body.wait ? ((await runs.wait(started.id, WAIT_MS)) ?? started) : started;
    res.status(202).json(view);
  });

  router.get('/analysis/runs/:id', admin, async (req, res) => {
    const { id } = parseOrThrow(idParams, req.params, 'params');
    const view = await runs.get(id);
    if (!view) throw new ProblemError('not_found', { detail: `No analysis run ${id}` });
    res.json(view);
  });

  return router;
}
