import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { cp, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { diffDatabaseToSchema, diffMigrationsToSchema, SCHEMA_PATH } from '../../scripts/db-migration.ts';
import {
  applyMigrations,
  dropDatabase,
  ensureDatabase,
  MIGRATIONS_DIR,
  withDatabase,
} from '../../src/db/migrate.ts';

// A change to prisma/schema.prisma without a migration fails here, before it reaches a database.

const base = process.env.TEST_DATABASE_BASE_URL ?? 'postgresql://postgres@127.0.0.1:5432';
const serverUrl = withDatabase(base, 'postgres');
const root = fileURLToPath(new URL('../../', import.meta.url));
const HOW_TO_FIX = 'prisma/schema.prisma changed without a migration: run `npm run db:migration -- <name>`';

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0)) await cleanup();
});

describe('schema drift', () => {
  it('the migrations build exactly prisma/schema.prisma', async () => {
    const { sql, hasLockfile } = await diffMigrationsToSchema({ serverUrl });
    expect(sql, HOW_TO_FIX).toBeNull();
    expect(hasLockfile, 'prisma/migrations/migration_lock.toml is missing').toBe(true);
  });

  it('a database migrated by Gatehouse itself has exactly the schema', async () => {
    const url = withDatabase(base, `gatehouse_test_drift_${randomBytes(4).toString('hex')}`);
    cleanups.push(() => dropDatabase(url));
    await ensureDatabase(url);
    await applyMigrations(url);

    expect(await diffDatabaseToSchema(url)).toBeNull();
  });

  it('notices a schema change that has no migration', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'gatehouse-schema-'));
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    const schemaPath = join(dir, 'schema.prisma');
    const schema = await readFile(SCHEMA_PATH, 'utf8');
    await writeFile(
      schemaPath,
      `${schema}\nmodel DriftProbe {\n  id    String @id\n  label String\n\n  @@map("drift_probe")\n}\n`,
    );

    const { sql } = await diffMigrationsToSchema({ serverUrl, schemaPath });

    expect(sql).toContain('CREATE TABLE "drift_probe"');
  });

  it('replays hand-written migrations with function bodies and semicolons in strings', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'gatehouse-migrations-'));
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    await cp(MIGRATIONS_DIR, dir, { recursive: true });
    await mkdir(join(dir, '29991231000000_function'));
    await writeFile(
      join(dir, '29991231000000_function', 'migration.sql'),
      "CREATE FUNCTION gatehouse_probe() RETURNS text LANGUAGE plpgsql AS $$ BEGIN RETURN 'a;b'; END $$;\n",
    );

    const { sql } = await diffMigrationsToSchema({ serverUrl, migrationsDir: dir });

    expect(sql).toBeNull();
  });

  it('the --check command agrees and exits 0', () => {
    const result = spawnSync(join(root, 'node_modules/.bin/tsx'), ['scripts/db-migration.ts', '--check'], {
      cwd: root,
      env: { ...process.env, DATABASE_URL: serverUrl },
      encoding: 'utf8',
      timeout: 60_000,
    });
    expect(result.stderr + result.stdout, HOW_TO_FIX).toContain('agree');
    expect(result.status).toBe(0);
  });
});
