import { randomBytes } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterEach, describe, expect, it } from 'vitest';
import {
  applyMigrations,
  dropDatabase,
  ensureDatabase,
  MIGRATIONS_DIR,
  sha256Hex,
  withDatabase,
} from '../../src/db/migrate.ts';

// Every test works in a database of its own, created here and dropped afterwards, so the tests can
// run in parallel with each other and with the shared database of the rest of the suite.

const base = process.env.TEST_DATABASE_BASE_URL ?? 'postgresql://postgres@127.0.0.1:5432';
const PRISMA_MIGRATE_LOCK_KEY = 72707369;

const migrationsOnDisk = readdirSync(MIGRATIONS_DIR, { withFileTypes: true })
  .filter((entry) => entry.isDirectory())
  .map((entry) => entry.name)
  .sort();
const checksums = new Map(
  migrationsOnDisk.map((name) => [
    name,
    sha256Hex(readFileSync(join(MIGRATIONS_DIR, name, 'migration.sql'), 'utf8')),
  ]),
);
const schemaTables = [
  ...readFileSync(new URL('../../prisma/schema.prisma', import.meta.url), 'utf8').matchAll(
    /@@map\("([^"]+)"\)/g,
  ),
].map((match) => match[1]);

const databases: string[] = [];
const cleanups: (() => Promise<void>)[] = [];

function freshDatabase(purpose: string): string {
  const url = withDatabase(base, `gatehouse_test_${purpose}_${randomBytes(4).toString('hex')}`);
  databases.push(url);
  return url;
}

afterEach(async () => {
  for (const cleanup of cleanups.splice(0)) await cleanup();
  for (const url of databases.splice(0)) await dropDatabase(url);
});

async function query<R extends pg.QueryResultRow>(
  url: string,
  sql: string,
  params: unknown[] = [],
): Promise<R[]> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 5_000 });
  await client.connect();
  try {
    return (await client.query<R>(sql, params)).rows;
  } finally {
    await client.end();
  }
}

interface MigrationRow {
  id: string;
  checksum: string;
  finished_at: Date | null;
  migration_name: string;
  logs: string | null;
  rolled_back_at: Date | null;
  started_at: Date;
  applied_steps_count: number;
}

function migrationRows(url: string): Promise<MigrationRow[]> {
  return query<MigrationRow>(url, 'SELECT * FROM _prisma_migrations ORDER BY migration_name');
}

async function migrationsDirWith(files: Record<string, string>): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'gatehouse-migrations-'));
  cleanups.push(() => rm(dir, { recursive: true, force: true }));
  for (const [name, sql] of Object.entries(files)) {
    await mkdir(join(dir, name));
    await writeFile(join(dir, name, 'migration.sql'), sql);
  }
  return dir;
}

describe('applyMigrations', () => {
  it('has migrations to apply', () => {
    expect(migrationsOnDisk.length).toBeGreaterThan(0);
    expect(schemaTables.length).toBeGreaterThan(0);
  });

  it('creates every table of a fresh database and records each migration as Prisma does', async () => {
    const url = freshDatabase('fresh');
    await ensureDatabase(url);

    const { applied } = await applyMigrations(url);
    expect(applied).toEqual(migrationsOnDisk);

    const tables = (
      await query<{ table_name: string }>(
        url,
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'",
      )
    ).map((row) => row.table_name);
    expect(tables).toEqual(expect.arrayContaining([...schemaTables, '_prisma_migrations']));

    const rows = await migrationRows(url);
    expect(rows.map((row) => row.migration_name)).toEqual(migrationsOnDisk);
    for (const row of rows) {
      expect(row.checksum).toBe(checksums.get(row.migration_name));
      expect(row.id).toMatch(/^[0-9a-f-]{36}$/);
      expect(row.finished_at).toBeInstanceOf(Date);
      expect(row.finished_at?.getTime()).toBeGreaterThanOrEqual(row.started_at.getTime());
      expect(row.rolled_back_at).toBeNull();
      expect(row.logs).toBeNull();
      expect(row.applied_steps_count).toBe(1);
    }
  });

  it('creates _prisma_migrations with exactly the columns Prisma creates', async () => {
    const url = freshDatabase('table');
    await ensureDatabase(url);
    await applyMigrations(url);
    const columns = await query(
      url,
      `SELECT column_name, data_type, character_maximum_length AS length, is_nullable, column_default
         FROM information_schema.columns WHERE table_name = '_prisma_migrations' ORDER BY ordinal_position`,
    );
    expect(columns).toEqual([
      {
        column_name: 'id',
        data_type: 'character varying',
        length: 36,
        is_nullable: 'NO',
        column_default: null,
      },
      {
        column_name: 'checksum',
        data_type: 'character varying',
        length: 64,
        is_nullable: 'NO',
        column_default: null,
      },
      {
        column_name: 'finished_at',
        data_type: 'timestamp with time zone',
        length: null,
        is_nullable: 'YES',
        column_default: null,
      },
      {
        column_name: 'migration_name',
        data_type: 'character varying',
        length: 255,
        is_nullable: 'NO',
        column_default: null,
      },
      { column_name: 'logs', data_type: 'text', length: null, is_nullable: 'YES', column_default: null },
      {
        column_name: 'rolled_back_at',
        data_type: 'timestamp with time zone',
        length: null,
        is_nullable: 'YES',
        column_default: null,
      },
      {
        column_name: 'started_at',
        data_type: 'timestamp with time zone',
        length: null,
        is_nullable: 'NO',
        column_default: 'now()',
      },
      {
        column_name: 'applied_steps_count',
        data_type: 'integer',
        length: null,
        is_nullable: 'NO',
        column_default: '0',
      },
    ]);
    const [primaryKey] = await query<{ column_name: string }>(
      url,
      `SELECT kcu.column_name FROM information_schema.table_constraints tc
         JOIN information_schema.key_column_usage kcu USING (constraint_name, table_name)
        WHERE tc.table_name = '_prisma_migrations' AND tc.constraint_type = 'PRIMARY KEY'`,
    );
    expect(primaryKey?.column_name).toBe('id');
  });

  it('applies nothing the second time', async () => {
    const url = freshDatabase('twice');
    await ensureDatabase(url);
    await applyMigrations(url);
    const before = await migrationRows(url);

    const { applied } = await applyMigrations(url);

    expect(applied).toEqual([]);
    expect(await migrationRows(url)).toEqual(before);
  });

  it('applies once when two processes start together', async () => {
    const url = freshDatabase('concurrent');
    await ensureDatabase(url);

    const [first, second] = await Promise.all([applyMigrations(url), applyMigrations(url)]);

    expect([...first.applied, ...second.applied]).toEqual(migrationsOnDisk);
    expect((await migrationRows(url)).map((row) => row.migration_name)).toEqual(migrationsOnDisk);
  });

  it('waits for the lock Prisma Migrate takes, and gives up after lockTimeoutMs', async () => {
    const url = freshDatabase('lock');
    await ensureDatabase(url);
    const holder = new pg.Client({ connectionString: url });
    await holder.connect();
    cleanups.push(() => holder.end());
    await holder.query(`SELECT pg_advisory_lock(${PRISMA_MIGRATE_LOCK_KEY})`);

    await expect(applyMigrations(url, { lockTimeoutMs: 300 })).rejects.toThrow(/migration lock/);

    const logs: string[] = [];
    const waiting = applyMigrations(url, { log: (msg) => logs.push(msg) });
    await expect.poll(() => logs.some((msg) => msg.includes('waiting'))).toBe(true);
    expect(await query(url, "SELECT 1 FROM pg_tables WHERE tablename = '_prisma_migrations'")).toEqual([]);
    await holder.query(`SELECT pg_advisory_unlock(${PRISMA_MIGRATE_LOCK_KEY})`);

    expect((await waiting).applied).toEqual(migrationsOnDisk);
  });

  it('refuses a migration edited after it was applied, but not one whose line endings changed', async () => {
    const url = freshDatabase('edited');
    await ensureDatabase(url);
    await applyMigrations(url);
    const [name] = migrationsOnDisk;
    const sql = readFileSync(join(MIGRATIONS_DIR, String(name), 'migration.sql'), 'utf8');

    await query(url, 'UPDATE _prisma_migrations SET checksum = $1 WHERE migration_name = $2', [
      sha256Hex(`${sql}\n-- an extra line`),
      name,
    ]);
    await expect(applyMigrations(url)).rejects.toThrow(
      new RegExp(`${name} was changed after it was applied`),
    );

    await query(url, 'UPDATE _prisma_migrations SET checksum = $1 WHERE migration_name = $2', [
      sha256Hex(sql.replaceAll('\n', '\r\n')),
      name,
    ]);
    expect((await applyMigrations(url)).applied).toEqual([]);
  });

  it('refuses to run while a failed migration is recorded', async () => {
    const url = freshDatabase('failedrow');
    await ensureDatabase(url);
    await applyMigrations(url);
    await query(
      url,
      `INSERT INTO _prisma_migrations (id, checksum, migration_name, started_at, applied_steps_count)
       VALUES (gen_random_uuid()::text, $1, '29990101000000_half_done', now(), 0)`,
      [sha256Hex('x')],
    );

    await expect(applyMigrations(url)).rejects.toThrow(/29990101000000_half_done failed earlier/);

    await query(
      url,
      "UPDATE _prisma_migrations SET rolled_back_at = now() WHERE migration_name LIKE '2999%'",
    );
    expect((await applyMigrations(url)).applied).toEqual([]);
  });

  it('rolls a failing migration back completely and records nothing for it', async () => {
    const url = freshDatabase('rollback');
    await ensureDatabase(url);
    const dir = await migrationsDirWith({
      '20000101000000_first': 'CREATE TABLE first_table (id int);',
      // Dollar quoting and a semicolon inside a string must survive: the script runs as one query.
      '20000102000000_second': `CREATE TABLE second_table (note text DEFAULT 'a;b');
CREATE FUNCTION second_fn() RETURNS int LANGUAGE plpgsql AS $$ BEGIN RETURN 1; END $$;
SELECT 1 / 0;`,
    });

    await expect(applyMigrations(url, { migrationsDir: dir })).rejects.toThrow(
      /20000102000000_second failed and was rolled back: division by zero/,
    );
    expect((await migrationRows(url)).map((row) => row.migration_name)).toEqual(['20000101000000_first']);
    expect(await query(url, "SELECT 1 FROM pg_tables WHERE tablename = 'second_table'")).toEqual([]);

    await writeFile(
      join(dir, '20000102000000_second', 'migration.sql'),
      `CREATE TABLE second_table (note text DEFAULT 'a;b');
CREATE FUNCTION second_fn() RETURNS int LANGUAGE plpgsql AS $$ BEGIN RETURN 1; END $$;`,
    );
    expect((await applyMigrations(url, { migrationsDir: dir })).applied).toEqual(['20000102000000_second']);
    expect(await query(url, 'SELECT second_fn() AS one')).toEqual([{ one: 1 }]);
  });

  it('rejects quickly when nothing listens on the port', async () => {
    const started = Date.now();
    await expect(applyMigrations('postgresql://postgres@127.0.0.1:1/gatehouse')).rejects.toMatchObject({
      code: 'ECONNREFUSED',
    });
    await expect(ensureDatabase('postgresql://postgres@127.0.0.1:1/gatehouse')).rejects.toMatchObject({
      code: 'ECONNREFUSED',
    });
    expect(Date.now() - started).toBeLessThan(3_000);
  });

  it('gives up on a server that accepts the connection but never answers', async () => {
    const sockets = new Set<Socket>();
    const server: Server = createServer((socket) => {
      sockets.add(socket);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    cleanups.push(async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    });
    const address = server.address();
    if (address === null || typeof address === 'string') throw new Error('no port');

    const started = Date.now();
    await expect(
      applyMigrations(`postgresql://postgres@127.0.0.1:${address.port}/gatehouse`),
    ).rejects.toThrow(/timeout/i);
    expect(Date.now() - started).toBeLessThan(8_000);
  });
});

describe('ensureDatabase and dropDatabase', () => {
  it('creates a missing database once', async () => {
    const url = freshDatabase('ensure');

    expect(await ensureDatabase(url)).toBe(true);
    expect(await ensureDatabase(url)).toBe(false);
    expect(await query(url, 'SELECT 1 AS ok')).toEqual([{ ok: 1 }]);
  });

  it('quotes the name, so an odd name is created as written', async () => {
    const name = `gatehouse_test_Odd "name" ${randomBytes(3).toString('hex')}`;
    const url = withDatabase(base, name);
    databases.push(url);

    expect(await ensureDatabase(url)).toBe(true);
    expect(await query(url, 'SELECT current_database() AS name')).toEqual([{ name }]);
  });

  it('creates the database once when two processes race', async () => {
    const url = freshDatabase('race');
    const results = await Promise.all([ensureDatabase(url), ensureDatabase(url), ensureDatabase(url)]);
    expect(results.filter(Boolean)).toEqual([true]);
  });

  it('drops a database that still has connections', async () => {
    const url = freshDatabase('drop');
    await ensureDatabase(url);
    const client = new pg.Client({ connectionString: url });
    client.on('error', () => {});
    await client.connect();
    cleanups.push(() => client.end().catch(() => {}));

    await dropDatabase(url);

    const name = new URL(url).pathname.slice(1);
    expect(
      await query(withDatabase(base, 'postgres'), 'SELECT 1 FROM pg_database WHERE datname = $1', [name]),
    ).toEqual([]);
  });
});
