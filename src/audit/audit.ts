import type { Db } from '../db/client.ts';
import type { Prisma } from '../generated/prisma/client.ts';
import { newId } from '../lib/ids.ts';

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
}

/** Audit events are rows in PostgreSQL, written in the caller's transaction when it has one. */
export function createAuditLog(db: Db): AuditLog {
  return {
    async record(entry, tx) {
      await (tx ?? db).auditEvent.create({
        data: {
          id: newId('aud'),
          actor: entry.actor,
          action: entry.action,
          subjectType: entry.subjectType,
          subjectId: entry.subjectId,
          data: entry.data,
          ...(entry.at ? { at: entry.at } : {}),
        },
      });
    },
  };
}
