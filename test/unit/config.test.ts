import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig, redactUrl } from '../../src/config.ts';
import { PolicyError, parsePolicy } from '../../src/policy/policy.ts';

describe('configuration', () => {
  it('has defaults that work on a developer machine', () => {
    const config = loadConfig({});
    expect(config.DATABASE_URL).toBe('postgresql://postgres@127.0.0.1:5432/gatehouse');
    expect(config.REDIS_URL).toBe('redis://127.0.0.1:6379');
    expect(config.PORT).toBe(8080);
    expect(config.GATEHOUSE_ADMIN_TOKEN).toBeUndefined();
    expect(config.USAGE_INGEST_BATCH).toBe(500);
  });

  it.each([
    [{ PORT: 'eighty' }, 'PORT'],
    [{ PORT: '70000' }, 'PORT'],
    [{ DATABASE_URL: 'mysql://x' }, 'DATABASE_URL'],
    [{ REDIS_URL: 'nope' }, 'REDIS_URL'],
    [{ LOG_LEVEL: 'loud' }, 'LOG_LEVEL'],
    [{ GATEHOUSE_ADMIN_TOKEN: 'short' }, 'GATEHOUSE_ADMIN_TOKEN'],
    [{ REDIS_PREFIX: 'Has Spaces' }, 'REDIS_PREFIX'],
    [{ USAGE_INGEST_BATCH: '5' }, 'USAGE_INGEST_BATCH'],
    [{ USAGE_INGEST_BATCH: '20000' }, 'USAGE_INGEST_BATCH'],
  ])('names the variable at fault: %o', (env, variable) => {
    expect(() => loadConfig(env)).toThrow(ConfigError);
    try {
      loadConfig(env);
    } catch (err) {
      expect((err as ConfigError).variable).toBe(variable);
      expect((err as Error).message.startsWith(`${variable} `)).toBe(true);
    }
  });

  it('treats empty variables as unset', () => {
    expect(loadConfig({ PORT: '' }).PORT).toBe(8080);
  });

  it('takes the usage ingestion batch size from the environment', () => {
    expect(loadConfig({ USAGE_INGEST_BATCH: '100' }).USAGE_INGEST_BATCH).toBe(100);
  });

  it('never shows a password in a URL it reports', () => {
    expect(redactUrl('postgresql://app:hunter2@db:5432/gh')).toBe('postgresql://app:***@db:5432/gh');
  });
});

describe('policy file', () => {
  it('rejects an unknown setting naming its path', () => {
    expect(() => parsePolicy('version: 1\nretention:\n  verificationDays: 3\n', 'p.yaml')).toThrow(
      PolicyError,
    );
    expect(() => parsePolicy('version: 1\nretention:\n  verificationsDays: -1\n', 'p.yaml')).toThrow(
      /retention\.verificationsDays/,
    );
  });

  it('accepts JSON as well as YAML', () => {
    expect(parsePolicy('{"version": 1}').retention.verificationsDays).toBe(7);
  });
});
