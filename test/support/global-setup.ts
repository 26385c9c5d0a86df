import { randomBytes } from 'node:crypto';
import type { TestProject } from 'vitest/node';
import { applyMigrations, dropDatabase, ensureDatabase } from '../../src/db/migrate.ts';

// Each test run gets its own PostgreSQL database, migrated from prisma/migrations, and drops it at
// the end. Tests share it, so they make their own unique rows and never assume an empty table.

declare module 'vitest' {
  export interface ProvidedContext {
    databaseUrl: string;
    redisUrl: string;
  }
}

const base = process.env.TEST_DATABASE_BASE_URL ?? 'postgresql://postgres@127.0.0.1:5432';

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const name = `gatehouse_test_${process.pid}_${randomBytes(4).toString('hex')}`;
  const url = `${base}/${name}`;
  await ensureDatabase(url);
  await applyMigrations(url);
  project.provide('databaseUrl', url);
  project.provide('redisUrl', process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379');
  return async () => {
    await dropDatabase(url);
  };
}
