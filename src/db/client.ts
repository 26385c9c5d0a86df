import { PrismaPg } from '@prisma/adapter-pg';
import { PrismaClient } from '../generated/prisma/client.ts';

export type Db = PrismaClient;

export function createDb(connectionString: string, connectTimeoutMs: number): Db {
  const adapter = new PrismaPg({
    connectionString,
    connectionTimeoutMillis: connectTimeoutMs,
    max: 10,
    // PostgreSQL compiles a query with LLVM once its estimated cost passes jit_above_cost. The
    // linking queries' estimates (nested per-account lookups) cross it while they run in
    // milliseconds, and compiling cost 0.3–0.8 s each: no query here is a long analytical scan.
    options: '-c jit=off',
  });
  return new PrismaClient({ adapter });
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
