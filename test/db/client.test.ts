import pg from 'pg';
import { describe, expect, it, vi } from 'vitest';
import { createDb } from '../../src/db/client.ts';

// The pg pool under the Prisma client (Db.pool) serves statements of its own, such as usage
// ingestion's batches, also in a process where Prisma has not run a query yet.

const base = process.env.TEST_DATABASE_BASE_URL ?? 'postgresql://postgres@127.0.0.1:5432';

describe('the database client', () => {
  it('survives an idle pooled connection the server drops, and ends its pool on $disconnect', async () => {
    const db = createDb(`${base}/postgres`, 2_000);
    const admin = new pg.Client({ connectionString: `${base}/postgres` });
    await admin.connect();
    try {
      // Before Prisma's first query: only the pool itself is there to hear the error.
      const client = await db.pool.connect();
      const { rows } = await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
      client.release();
      expect(db.pool.idleCount).toBe(1);
      await admin.query('SELECT pg_terminate_backend($1)', [rows[0]!.pid]);
      // The pool drops the broken connection and opens another for the next statement.
      await vi.waitFor(() => expect(db.pool.idleCount).toBe(0), { timeout: 5_000, interval: 20 });
      expect((await db.pool.query('SELECT 1 AS one')).rows).toEqual([{ one: 1 }]);
      expect(await db.$queryRaw`SELECT 2 AS two`).toEqual([{ two: 2 }]);
    } finally {
      await admin.end();
      await db.$disconnect();
    }
    expect(db.pool.ended).toBe(true);
  });
});
