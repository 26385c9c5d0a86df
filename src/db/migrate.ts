import { createHash, randomUUID } from 'node:crypto';
import type { Dirent } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';

// Gatehouse applies its own migrations at start-up with plain `pg`: the Prisma CLI needs a native
// schema engine that it downloads first, which a server without internet cannot do. The migrations
// stay in Prisma's format and bookkeeping (`_prisma_migrations`, same checksums, same advisory lock),
// so `prisma migrate deploy` or `migrate status` run later by an operator agree with what happened here.

/** Where the migrations live, resolved from this file so the working directory does not matter. */
export const MIGRATIONS_DIR = fileURLToPath(new URL('../../prisma/migrations/', import.meta.url));

/** A server that does not answer must fail start-up quickly rather than hang it. */
const CONNECT_TIMEOUT_MS = 5_000;

// The key Prisma Migrate itself locks on: taking the same one serialises Gatehouse processes with
// each other and with a `prisma migrate deploy` run at the same moment.
const PRISMA_MIGRATE_LOCK_KEY = 72707369;

const DEFAULT_LOCK_TIMEOUT_MS = 5 * 60_000;

// Exactly Prisma's definition, so the Prisma CLI recognises the table as its own.
const CREATE_MIGRATIONS_TABLE = `
CREATE TABLE IF NOT EXISTS _prisma_migrations (
    id                      VARCHAR(36) PRIMARY KEY NOT NULL,
    checksum                VARCHAR(64) NOT NULL,
    finished_at             TIMESTAMPTZ,
    migration_name          VARCHAR(255) NOT NULL,
    logs                    TEXT,
    rolled_back_at          TIMESTAMPTZ,
    started_at              TIMESTAMPTZ NOT NULL DEFAULT now(),
    applied_steps_count     INTEGER NOT NULL DEFAULT 0
)`;

export interface ApplyMigrationsOptions {
  log?: (msg: string) => void;
  /** Defaults to prisma/migrations; tests point it at a folder of their own. */
  migrationsDir?: string;
  /** How long to wait for another process that holds the migration lock. */
  lockTimeoutMs?: number;
}

interface MigrationFile {
  name: string;
  sql: string;
}

interface MigrationRow {
  migration_name: string;
  checksum: string;
  finished_at: Date | null;
  rolled_back_at: Date | null;
}

export function sha256Hex(text: string): string {
  return createHash('sha256').update(text, 'utf8').digest('hex');
}

// Prisma accepts a file whose line endings git changed since it was applied; so must we, or a
// checkout on Windows would be refused as "edited".
function checksumMatches(sql: string, checksum: string): boolean {
  const variants = [sql, sql.replaceAll('\r\n', '\n'), sql.replaceAll('\n', '\r\n')];
  return variants.some((variant) => sha256Hex(variant) === checksum);
}

async function readMigrations(dir: string): Promise<MigrationFile[]> {
  let entries: Dirent[];
  try {
    entries = await readdir(dir, { withFileTypes: true });
  } catch (err) {
    // Starting with no tables would only fail later and more confusingly.
    throw new Error(`Gatehouse migrations folder not found at ${dir}`, { cause: err });
  }
  const names = entries
    .filter((entry) => entry.isDirectory())
    .map((entry) => entry.name)
    // Names start with a UTC timestamp; a code-unit sort keeps the order independent of the locale.
    .sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  const migrations: MigrationFile[] = [];
  for (const name of names) {
    const file = join(dir, name, 'migration.sql');
    let sql: string;
    try {
      sql = await readFile(file, 'utf8');
    } catch (err) {
      throw new Error(`Gatehouse migration ${name} has no readable migration.sql (${file})`, { cause: err });
    }
    migrations.push({ name, sql });
  }
  return migrations;
}

function connect(connectionString: string, applicationName: string): pg.Client {
  return new pg.Client({
    connectionString,
    connectionTimeoutMillis: CONNECT_TIMEOUT_MS,
    application_name: applicationName,
  });
}

function pgErrorCode(err: unknown): string | undefined {
  if (typeof err === 'object' && err !== null && 'code' in err && typeof err.code === 'string')
    return err.code;
  return undefined;
}

async function acquireLock(client: pg.Client, timeoutMs: number, log: (msg: string) => void): Promise<void> {
  const { rows } = await client.query<{ locked: boolean }>('SELECT pg_try_advisory_lock($1) AS locked', [
    PRISMA_MIGRATE_LOCK_KEY,
  ]);
  if (rows[0]?.locked) return;
  log('another process is applying migrations; waiting for it to finish');
  await client.query("SELECT set_config('lock_timeout', $1, false)", [
    `${Math.max(1, Math.round(timeoutMs))}ms`,
  ]);
  try {
    await client.query('SELECT pg_advisory_lock($1)', [PRISMA_MIGRATE_LOCK_KEY]);
  } catch (err) {
    if (pgErrorCode(err) === '55P03') {
      throw new Error(
        `Gatehouse gave up after ${Math.round(timeoutMs / 1000)} s waiting for the migration lock ` +
          `(PostgreSQL advisory lock ${PRISMA_MIGRATE_LOCK_KEY}) held by another process`,
        { cause: err },
      );
    }
    throw err;
  }
  // The migrations themselves must not inherit the wait limit meant for the lock.
  await client.query('RESET lock_timeout');
}

/**
 * Applies every migration in prisma/migrations that the database has not recorded yet, in name order,
 * each in its own transaction, and records it in `_prisma_migrations` as Prisma would.
 */
export async function applyMigrations(
  connectionString: string,
  opts: ApplyMigrationsOptions = {},
): Promise<{ applied: string[] }> {
  const log = opts.log ?? (() => {});
  const migrations = await readMigrations(opts.migrationsDir ?? MIGRATIONS_DIR);

  const client = connect(connectionString, 'gatehouse-migrate');
  // Without a listener, a server that drops the idle connection would crash the process.
  client.on('error', (err) => log(`migration connection error: ${err.message}`));
  await client.connect();
  try {
    await acquireLock(client, opts.lockTimeoutMs ?? DEFAULT_LOCK_TIMEOUT_MS, log);
    try {
      return { applied: await applyPending(client, migrations, log) };
    } finally {
      await client.query('SELECT pg_advisory_unlock($1)', [PRISMA_MIGRATE_LOCK_KEY]).catch(() => {});
    }
  } finally {
    await client.end().catch(() => {});
  }
}

async function applyPending(
  client: pg.Client,
  migrations: MigrationFile[],
  log: (msg: string) => void,
): Promise<string[]> {
  await client.query(CREATE_MIGRATIONS_TABLE);
  const { rows } = await client.query<MigrationRow>(
    'SELECT migration_name, checksum, finished_at, rolled_back_at FROM _prisma_migrations ORDER BY started_at',
  );

  const failed = rows.filter((row) => row.finished_at === null && row.rolled_back_at === null);
  if (failed.length > 0) {
    const names = failed.map((row) => row.migration_name).join(', ');
    throw new Error(
      `Gatehouse will not migrate: migration ${names} failed earlier and is marked as unfinished in ` +
        '_prisma_migrations. Repair the database by hand, then mark it with ' +
        '`prisma migrate resolve --rolled-back <name>` (or `--applied <name>`) before starting again.',
    );
  }

  const applied = rows.filter((row) => row.finished_at !== null && row.rolled_back_at === null);
  const appliedNames = new Set(applied.map((row) => row.migration_name));
  const onDisk = new Map(migrations.map((m) => [m.name, m]));

  const edited = applied.filter((row) => {
    const file = onDisk.get(row.migration_name);
    return file !== undefined && !checksumMatches(file.sql, row.checksum);
  });
  if (edited.length > 0) {
    const names = [...new Set(edited.map((row) => row.migration_name))].join(', ');
    throw new Error(
      `Gatehouse will not migrate: migration ${names} was changed after it was applied (its checksum ` +
        'differs from _prisma_migrations). Restore the original file and put the change in a new migration.',
    );
  }

  // A database that is ahead of this release (a rollback of the code) still works with older code
  // as long as its migrations were additive, so this is worth a line in the log, not a refusal.
  const unknown = [...appliedNames].filter((name) => !onDisk.has(name));
  if (unknown.length > 0) log(`database has migrations this release does not know: ${unknown.join(', ')}`);

  const done: string[] = [];
  for (const migration of migrations) {
    if (appliedNames.has(migration.name)) continue;
    const started = Date.now();
    log(`applying migration ${migration.name}`);
    await client.query('BEGIN');
    try {
      // One simple-protocol query runs the whole script, so dollar-quoted bodies and semicolons in
      // strings survive; a migration that cannot run inside a transaction fails here and changes nothing.
      await client.query(migration.sql);
      await client.query(
        `INSERT INTO _prisma_migrations (id, checksum, finished_at, migration_name, logs, started_at, applied_steps_count)
         VALUES ($1, $2, clock_timestamp(), $3, NULL, now(), 1)`,
        [randomUUID(), sha256Hex(migration.sql), migration.name],
      );
      await client.query('COMMIT');
    } catch (err) {
      await client.query('ROLLBACK').catch(() => {});
      const reason = err instanceof Error ? err.message : String(err);
      throw new Error(`Gatehouse migration ${migration.name} failed and was rolled back: ${reason}`, {
        cause: err,
      });
    }
    log(`applied migration ${migration.name} in ${Date.now() - started} ms`);
    done.push(migration.name);
  }
  return done;
}

// ---------------------------------------------------------------------------------------------
// Databases

function parseUrl(connectionString: string): URL {
  try {
    return new URL(connectionString);
  } catch {
    throw new Error('Gatehouse needs the database as a postgresql:// URL');
  }
}

/** The database a connection string names, decoded exactly as `pg` decodes it. */
export function databaseName(connectionString: string): string {
  const name = decodeURI(parseUrl(connectionString).pathname.slice(1));
  if (name === '') throw new Error('the database URL names no database');
  return name;
}

// `pg` decodes the path with decodeURI, which leaves these escaped: a name containing one could not
// be written into a URL that `pg` reads back as the same name.
const UNREPRESENTABLE_IN_URL = /[;/?:@&=+$,#]/;

/** The same server and credentials, another database. */
export function withDatabase(connectionString: string, database: string): string {
  if (UNREPRESENTABLE_IN_URL.test(database))
    throw new Error(`database name ${JSON.stringify(database)} cannot be put in a URL`);
  const url = parseUrl(connectionString);
  url.pathname = `/${encodeURIComponent(database)}`;
  return url.toString();
}

export function quoteIdentifier(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}

// Like Prisma: the `postgres` maintenance database, or `template1` where `postgres` was dropped.
async function withMaintenanceClient<T>(
  connectionString: string,
  fn: (client: pg.Client) => Promise<T>,
): Promise<T> {
  let lastError: unknown;
  for (const maintenance of ['postgres', 'template1']) {
    const client = connect(withDatabase(connectionString, maintenance), 'gatehouse-admin');
    client.on('error', () => {});
    try {
      await client.connect();
    } catch (err) {
      await client.end().catch(() => {});
      lastError = err;
      if (pgErrorCode(err) === '3D000') continue;
      throw err;
    }
    try {
      return await fn(client);
    } finally {
      await client.end().catch(() => {});
    }
  }
  throw lastError;
}

/** Creates the database the connection string names if it is missing; true when it created it. */
export async function ensureDatabase(connectionString: string): Promise<boolean> {
  const name = databaseName(connectionString);
  return withMaintenanceClient(connectionString, async (client) => {
    const existing = await client.query('SELECT 1 FROM pg_database WHERE datname = $1', [name]);
    if ((existing.rowCount ?? 0) > 0) return false;
    try {
      await client.query(`CREATE DATABASE ${quoteIdentifier(name)}`);
      return true;
    } catch (err) {
      // Another process created it between the check and here (42P04, or 23505 on the catalog index).
      const code = pgErrorCode(err);
      if (code === '42P04' || code === '23505') return false;
      throw err;
    }
  });
}

/** Drops the database, disconnecting its sessions first; for tests and throwaway databases. */
export async function dropDatabase(connectionString: string): Promise<void> {
  const name = databaseName(connectionString);
  await withMaintenanceClient(connectionString, async (client) => {
    await client.query(`DROP DATABASE IF EXISTS ${quoteIdentifier(name)} WITH (FORCE)`);
  });
}
