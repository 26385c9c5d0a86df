import { PrismaPg } from '@prisma/adapter-pg';
import pg from 'pg';
import { PrismaClient } from '../generated/prisma/client.ts';

/**
 * The Prisma client, and the pg pool under it for the few statements that pass one large
 * parameter: Prisma's raw queries turn every parameter into JSON and parse it back before the
 * driver sees it, which for a usage batch's rows (~200 KB of JSON text) was a tenth of the
 * ingestion worker's CPU (`npm run bench:ingest`).
 */
export type Db = PrismaClient & { readonly pool: pg.Pool };

export function createDb(connectionString: string, connectTimeoutMs: number): Db {
  const pool = new pg.Pool({
    connectionString,
    connectionTimeoutMillis: connectTimeoutMs,
    max: 10,
    // PostgreSQL compiles a query with LLVM once its estimated cost passes jit_above_cost. The
    // linking queries' estimates (nested per-account lookups) cross it while they run in
    // milliseconds, and compiling cost 0.3–0.8 s each: no query here is a long analytical scan.
    options: '-c jit=off',
  });
  return dbOnPool(pool);
}

/** The Prisma client on this pool, which it owns: $disconnect() ends the pool too. */
export function dbOnPool(pool: pg.Pool): Db {
  // An idle connection the server drops (a restart, an administrator) is an 'error' event on the
  // pool, which throws where nothing listens: until Prisma's first query only this listener does.
  // The pool has already discarded that connection, and the next statement opens another or
  // reports the fault itself.
  pool.on('error', () => {});
  const adapter = new PrismaPg(pool, { disposeExternalPool: true });
  return Object.assign(new PrismaClient({ adapter }), { pool });
}

/**
 * Options for a transaction whose work grows with `items` (a farm's members, a run's links or
 * clusters): `baseMs` plus `msPerItem` for each, so that no size is refused outright by a fixed
 * timeout, and 10 s to get a connection.
 */
export const growingTransaction = (baseMs: number, msPerItem: number, items: number) => ({
  maxWait: 10_000,
  timeout: baseMs + msPerItem * items,
});

export { Prisma } from '../generated/prisma/client.ts';
