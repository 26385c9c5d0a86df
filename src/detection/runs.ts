import type { Db } from '../db/client.ts';
import type { AnalysisRun } from '../generated/prisma/client.ts';
import { newId } from '../lib/ids.ts';
import type { Queues } from '../queues/queues.ts';

// Analysis runs as the API sees them: a row in PostgreSQL (the record) and a job on the first
// stage's queue (the work; see run-stages.ts for the stages). Runs go one at a time.

export interface RunView {
  id: string;
  status: AnalysisRun['status'];
  /** The stage a running run is in, or the last one a finished run reached. */
  stage: string | null;
  asOf: string | null;
  summary: unknown;
  error: string | null;
  createdAt: string;
  startedAt: string | null;
  finishedAt: string | null;
}

export const runView = (r: AnalysisRun): RunView => ({
  id: r.id,
  status: r.status,
  stage: r.stage,
  asOf: r.asOf?.toISOString() ?? null,
  summary: r.summary ?? null,
  error: r.error,
  createdAt: r.createdAt.toISOString(),
  startedAt: r.startedAt?.toISOString() ?? null,
  finishedAt: r.finishedAt?.toISOString() ?? null,
});

export interface RunService {
  start(requestedBy: string, asOf: Date | null): Promise<RunView>;
  get(id: string): Promise<RunView | null>;
  /** Polls until the run finished or `timeoutMs` passed; returns its latest state. */
  wait(id: string, timeoutMs: number): Promise<RunView | null>;
}

export function createRunService(deps: { db: Db; queues: Queues }): RunService {
  const get = async (id: string) => {
    const row = await deps.db.analysisRun.findUnique({ where: { id } });
    return row ? runView(row) : null;
  };
  return {
    async start(requestedBy, asOf) {
      const row = await deps.db.analysisRun.create({ data: { id: newId('run'), requestedBy, asOf } });
      await deps.queues.add(
        'features',
        'features',
        { runId: row.id },
        // A run must not be repeated on its own: a failure is recorded on the run, not retried.
        { jobId: `${row.id}-features`, attempts: 1 },
      );
      return runView(row);
    },
    get,
    async wait(id, timeoutMs) {
      const until = Date.now() + timeoutMs;
      let view = await get(id);
      while (view && (view.status === 'queued' || view.status === 'running') && Date.now() < until) {
        await new Promise((r) => setTimeout(r, 100));
        view = await get(id);
      }
      return view;
    },
  };
}
