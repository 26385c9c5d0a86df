import { Router } from 'express';
import { z } from 'zod';
import { principalOf, requireScope } from '../http/auth.ts';
import { jsonBody } from '../http/body.ts';
import { ProblemError } from '../http/problem.ts';
import { parseOrThrow } from '../http/validate.ts';
import type { ImportError, ImportService } from './service.ts';

// Backfill batches are far larger than any other call (5,000 events with their query texts), so
// these routes read their own bodies with their own limits. The router must therefore be mounted
// before the /v1 JSON parser, which would otherwise refuse such a body first.

export interface ImportBodyLimits {
  accounts: number;
  events: number;
}

// 1,000 accounts of at most ~2 KiB each; 5,000 events of a few KiB each with their query text.
export const IMPORT_BODY_LIMITS: ImportBodyLimits = { accounts: 4 * 1024 * 1024, events: 16 * 1024 * 1024 };

// Only the envelope is checked here: the service checks each record and names it by its index.
const accountsBody = z.strictObject({ accounts: z.array(z.unknown()).min(1).max(1000) });
const eventsBody = z.strictObject({ events: z.array(z.unknown()).min(1).max(5000) });

function invalid(errors: ImportError[]): ProblemError {
  const reasons = [...new Set(errors.flatMap((e) => (e.reason ? [e.reason] : [])))];
  const shown = errors.slice(0, 10).map((e) => e.field);
  const more = errors.length > shown.length ? ` and ${errors.length - shown.length} more` : '';
  return new ProblemError('validation_failed', {
    detail: `Nothing was imported; invalid records: ${shown.join(', ')}${more}`,
    errors: errors.map(({ field, message }) => ({ field, message })),
    ...(reasons.length > 0 ? { reasons } : {}),
  });
}

export function importRoutes(service: ImportService, limits: ImportBodyLimits = IMPORT_BODY_LIMITS): Router {
  const router = Router();

  // Scope first: a caller without it never gets a 16 MiB body read on its behalf.
  router.post(
    '/import/accounts',
    requireScope('ingest', 'admin'),
    ...jsonBody(limits.accounts),
    async (req, res) => {
      const body = parseOrThrow(accountsBody, req.body, 'body');
      const outcome = await service.importAccounts(body.accounts, principalOf(res));
      if (!outcome.ok) throw invalid(outcome.errors);
      res.json(outcome.value);
    },
  );

  router.post(
    '/usage-events',
    requireScope('ingest', 'admin'),
    ...jsonBody(limits.events),
    async (req, res) => {
      const body = parseOrThrow(eventsBody, req.body, 'body');
      const outcome = await service.ingestEvents(body.events, principalOf(res));
      if (!outcome.ok) throw invalid(outcome.errors);
      res.json(outcome.value);
    },
  );

  return router;
}
