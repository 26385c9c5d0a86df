import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { afterAll, describe, expect, inject, it } from 'vitest';
import { dropDatabase } from '../../src/db/migrate.ts';
import { cleanRedisPrefix } from '../support/harness.ts';

// Starts the real entry point as a child process, as an operator would with `npm start`.

const MAIN = new URL('../../src/main.ts', import.meta.url).pathname;

interface Run {
  child: ChildProcess;
  stdout: string;
  stderr: string;
  exited: Promise<{ code: number | null; ms: number }>;
}

function start(env: Record<string, string>, mode = 'all'): Run {
  const started = Date.now();
  // As `npm start` runs it: node itself with tsx's loader, so signals reach Gatehouse directly.
  const child = spawn(process.execPath, ['--import', 'tsx', MAIN, mode], {
    cwd: new URL('../..', import.meta.url).pathname,
    env: {
      PATH: process.env.PATH ?? '',
      HOME: process.env.HOME ?? '/tmp',
      LOG_LEVEL: 'warn',
      HOST: '127.0.0.1',
      PORT: '0',
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const run: Run = { child, stdout: '', stderr: '', exited: Promise.resolve({ code: null, ms: 0 }) };
  child.stdout!.on('data', (d) => {
    run.stdout += String(d);
  });
  child.stderr!.on('data', (d) => {
    run.stderr += String(d);
  });
  run.exited = new Promise((resolve) =>
    child.on('exit', (code) => resolve({ code, ms: Date.now() - started })),
  );
  return run;
}

async function waitFor(run: Run, pattern: RegExp, ms: number): Promise<RegExpMatchArray> {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    const m = pattern.exec(run.stdout);
    if (m) return m;
    if (run.child.exitCode !== null) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`did not see ${pattern} (stdout: ${run.stdout}; stderr: ${run.stderr})`);
}

const databaseUrl = inject('databaseUrl');
const redisUrl = inject('redisUrl');
const prefix = `t${randomBytes(5).toString('hex')}`;
const freshDb = `${databaseUrl.replace(/\/[^/]+$/, '')}/gatehouse_start_${randomBytes(4).toString('hex')}`;

afterAll(async () => {
  await dropDatabase(freshDb);
  await cleanRedisPrefix(redisUrl, prefix);
});

describe('npm start', () => {
  it('creates the database, migrates, serves /readyz and drains on SIGTERM with exit 0', async () => {
    const run = start({
      DATABASE_URL: freshDb,
      REDIS_URL: redisUrl,
      REDIS_PREFIX: prefix,
      GATEHOUSE_ADMIN_TOKEN: 'x'.repeat(32),
    });
    const [, url] = await waitFor(run, /ready at (http:\/\/\S+)/, 60_000);
    const ready = await fetch(`${url}/readyz`);
    expect(ready.status).toBe(200);
    const tokens = await fetch(`${url}/v1/tokens`, {
      headers: { authorization: `Bearer ${'x'.repeat(32)}` },
    });
    expect(tokens.status).toBe(200);
    run.child.kill('SIGTERM');
    const { code } = await run.exited;
    expect(code).toBe(0);
    expect(run.stderr).toBe('');
  }, 90_000);

  it('exits non-zero within 10 s naming PostgreSQL when it cannot be reached', async () => {
    const run = start({
      DATABASE_URL: 'postgresql://postgres@127.0.0.1:1/gatehouse',
      REDIS_URL: redisUrl,
      REDIS_PREFIX: prefix,
    });
    const { code, ms } = await run.exited;
    expect(code).not.toBe(0);
    expect(ms).toBeLessThan(10_000);
    const lines = run.stderr.trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/cannot reach PostgreSQL at postgresql:\/\/postgres@127\.0\.0\.1:1\/gatehouse/);
  }, 20_000);

  it('exits non-zero within 10 s naming Redis when it cannot be reached', async () => {
    const run = start({ DATABASE_URL: databaseUrl, REDIS_URL: 'redis://127.0.0.1:1', REDIS_PREFIX: prefix });
    const { code, ms } = await run.exited;
    expect(code).not.toBe(0);
    expect(ms).toBeLessThan(10_000);
    const lines = run.stderr.trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/cannot reach Redis at redis:\/\/127\.0\.0\.1:1/);
  }, 20_000);

  it('stops with one line naming a bad setting', async () => {
    const run = start({ PORT: 'eighty', DATABASE_URL: databaseUrl });
    const { code } = await run.exited;
    expect(code).toBe(1);
    expect(run.stderr.trim()).toMatch(/^gatehouse: invalid configuration: PORT /);
    expect(run.stderr.trim().split('\n')).toHaveLength(1);
  }, 20_000);
});
