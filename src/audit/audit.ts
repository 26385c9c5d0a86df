import type { Db } from '../db/client.ts';
import type { Prisma } from '../generated/prisma/client.ts';
import { newId } from '../lib/ids.ts';
import { inSlices } from '../lib/in-slices.ts';

export interface AuditEntry {
  actor: string;
  action: string;
  subjectType: string;
  subjectId: string;
  data: Prisma.InputJsonValue;
  at?: Date;
}

export interface AuditLog {
  record(entry: AuditEntry, tx?: Pick<Db, 'auditEvent'>): Promise<void>;
  /** Many entries in a few statements (every member of a farm, say); all or none within `tx`. */
  recordMany(entries: readonly AuditEntry[], tx?: Pick<Db, 'auditEvent'>): Promise<void>;
}

// Rows per INSERT: seven columns each, well inside PostgreSQL's 65,535 parameters per statement.
const ROWS_PER_INSERT = 1_000;

const rowOf = (entry: AuditEntry) => ({
  id: newId('aud'),
  actor: entry.actor,
  action: entry.action,
  subjectType: entry.subjectType,
  subjectId: entry.subjectId,
  data: entry.data,
  ...(entry.at ? { at: entry.at } : {}),
});

/** Audit events are rows in PostgreSQL, written in the caller's transaction when it has one. */
export function createAuditLog(db: Db): AuditLog {
  return {
    async record(entry, tx) {
      await (tx ?? db).auditEvent.create({ data: rowOf(entry) });
    },
    async recordMany(entries, tx) {
      await inSlices(entries, ROWS_PER_INSERT, async (slice) => {
        await (tx ?? db).auditEvent.createMany({ data: slice.map(rowOf) });
      });
    },
  };
}
