import { createAuditLog } from '../../src/audit/audit.ts';
import type { Db } from '../../src/db/client.ts';
import { createImportService } from '../../src/import/service.ts';
import { createLogger } from '../../src/logger.ts';
import type { Policy } from '../../src/policy/policy.ts';
import type { AsnDatabase } from '../../src/signals/asn.ts';
import { createDisposableChecker } from '../../src/signals/disposable.ts';
import { createHostingClassifier } from '../../src/signals/hosting.ts';
import type { Principal } from '../../src/tokens/scopes.ts';
import { type ImportRecord, type Population, ROLES, type Role } from './linking-population.ts';

// Feeds the population to the import service in-process, one call per batch of 1,000: the same
// ImportService.importAccounts that POST /v1/import/accounts calls after reading the body, so the
// figures are the service's (validation, derivation, the plan, the one transaction with its
// synchronous signal indexing) without HTTP and JSON parsing of the request.

export const BATCH = 1_000;
// The recent rate, not the step's mean, is what the rest of a long import will run at.
const RECENT_BATCHES = 50;

export interface StepImport {
  target: number;
  /** Accounts in the database at the end of the step. */
  reached: number;
  added: number;
  /** Time spent inside importAccounts only (generation excluded). */
  seconds: number;
  generateSeconds: number;
  perSecond: number;
  /** Rate over the last batches: the import slows as the indexes outgrow memory. */
  recentPerSecond: number;
  /** The time budget ran out before `target`. */
  stopped: boolean;
}

export interface Importer {
  importUntil(target: number, opts: { deadlineMs: number; signal: AbortSignal }): Promise<StepImport>;
  /** Imported account ids: all, and by role. */
  readonly ids: { all: readonly string[]; byRole: Readonly<Record<Role, readonly string[]>> };
  /** Total time spent importing over all steps, in ms. */
  readonly spentMs: number;
}

export interface ImporterDeps {
  db: Db;
  asn: AsnDatabase;
  policy: Policy;
  population: Population;
  log: (msg: string) => void;
}

const ACTOR: Principal = { tokenId: 'bench', name: 'bench:linking', scopes: ['ingest'] };

export function createImporter(deps: ImporterDeps): Importer {
  const service = createImportService({
    db: deps.db,
    audit: createAuditLog(deps.db),
    asn: deps.asn,
    hosting: createHostingClassifier(),
    disposable: createDisposableChecker(),
    policy: () => deps.policy,
    // The service logs every batch at info: a thousand lines that say nothing about speed.
    logger: createLogger('warn'),
  });
  const all: string[] = [];
  const byRole = Object.fromEntries(ROLES.map((r) => [r, [] as string[]])) as Record<Role, string[]>;
  let spentMs = 0;

  async function importUntil(
    target: number,
    opts: { deadlineMs: number; signal: AbortSignal },
  ): Promise<StepImport> {
    const from = all.length;
    const recent: Array<readonly [count: number, ms: number]> = [];
    let stepMs = 0;
    let generateMs = 0;
    let stopped = false;
    let lastLog = performance.now();
    while (all.length < target) {
      opts.signal.throwIfAborted();
      const size = Math.min(BATCH, target - all.length);
      const g0 = performance.now();
      const members = Array.from({ length: size }, () => deps.population.next());
      const records: ImportRecord[] = members.map((m) => m.record);
      const t0 = performance.now();
      generateMs += t0 - g0;
      const outcome = await service.importAccounts(records, ACTOR);
      const ms = performance.now() - t0;
      if (!outcome.ok) {
        const errors = outcome.errors.slice(0, 5).map((e) => `${e.field}: ${e.message}`);
        throw new Error(`import refused a generated batch: ${errors.join('; ')}`);
      }
      if (outcome.value.imported !== size) {
        throw new Error(
          `import created ${outcome.value.imported} of ${size} accounts (${outcome.value.existing} existed)`,
        );
      }
      outcome.value.accounts.forEach((a, i) => {
        all.push(a.accountId);
        byRole[members[i]!.role].push(a.accountId);
      });
      stepMs += ms;
      spentMs += ms;
      recent.push([size, ms]);
      if (recent.length > RECENT_BATCHES) recent.shift();
      if (performance.now() - lastLog > 15_000) {
        lastLog = performance.now();
        deps.log(
          `imported ${all.length.toLocaleString('en-US')} / ${target.toLocaleString('en-US')}` +
            ` (${Math.round(recentRate(recent))} accounts/s recently, ${Math.round(spentMs / 1000)} s importing so far)`,
        );
      }
      if (spentMs > opts.deadlineMs && all.length < target) {
        stopped = true;
        break;
      }
    }
    const added = all.length - from;
    return {
      target,
      reached: all.length,
      added,
      seconds: stepMs / 1000,
      generateSeconds: generateMs / 1000,
      perSecond: stepMs > 0 ? added / (stepMs / 1000) : 0,
      recentPerSecond: recentRate(recent),
      stopped,
    };
  }

  return {
    importUntil,
    ids: { all, byRole },
    get spentMs() {
      return spentMs;
    },
  };
}

function recentRate(recent: ReadonlyArray<readonly [number, number]>): number {
  const count = recent.reduce((s, [c]) => s + c, 0);
  const ms = recent.reduce((s, [, m]) => s + m, 0);
  return ms > 0 ? count / (ms / 1000) : 0;
}
