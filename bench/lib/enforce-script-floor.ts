import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { Redis } from 'ioredis';
import { type CheckRequest, createSlidingWindowLimiter, type LimitSpec } from '../../src/limits/limiter.ts';
import { type CommandParts, RespClient, type RespValue } from '../../src/redis/resp-client.ts';
import { encodeUsageEvent } from '../../src/usage/event.ts';

// Redis CPU inside the limiter script per decision, against a floor: bench/lib/script-floor.lua runs
// the same commands on the same arguments with no logic. Both are measured the same way, INFO
// commandstats usec over many calls, with the shape of bench:enforce's decisions (5 dimensions x 2
// windows, one hash per dimension, and the usage event).

export const FLOOR = readFileSync(new URL('./script-floor.lua', import.meta.url), 'utf8');

/** How far the floor script goes (see its header): the breakdown runs it stopped short. */
export type FloorStage = 'args' | 'reads' | 'writes' | 'all';
const STAGE_LINE = "local stage = 'all'";
if (!FLOOR.includes(STAGE_LINE)) throw new Error(`script-floor.lua: no line ${STAGE_LINE}`);

export function floorSource(stage: FloorStage): string {
  return FLOOR.replace(STAGE_LINE, `local stage = '${stage}'`);
}
const sha1 = (source: string) => createHash('sha1').update(source).digest('hex');

/**
 * The limiter's own client, except that every script call runs the floor script instead (load it
 * first: `SCRIPT LOAD` of `floorSource(stage)`).
 */
export class FloorClient extends RespClient {
  private readonly sha: string;
  constructor(options: ConstructorParameters<typeof RespClient>[0], stage: FloorStage = 'all') {
    super(options);
    this.sha = sha1(floorSource(stage));
  }

  override callParts(parts: CommandParts): Promise<RespValue> {
    const [head, ...rest] = parts;
    const name = Array.isArray(head) ? head[0] : undefined;
    if (name !== 'EVALSHA' && name !== 'EVAL') return super.callParts(parts);
    return super.callParts([['EVALSHA', this.sha], ...rest]);
  }
}

/** A usage event's fields as a decision appends them: account (and key) `account`, device `device`. */
export function sampleEventFields(account: number, device: number, at: number): Record<string, string> {
  return encodeUsageEvent({
    accountId: `acc_${account}`,
    keyId: `key_${account}`,
    at,
    ip: `203.0.113.${account % 250}`,
    asn: 64_500,
    fingerprint: `fp_${device}`,
    tlsFingerprint: null,
    userAgent: 'python-requests/2.32.3',
    endpoint: '/v1/chat/completions',
    cost: 1,
    decision: 'allow',
    reason: null,
    minhash: [],
    sampled: true,
  });
}

export interface ScriptCost {
  calls: number;
  /** µs of Redis CPU per call of the limiter script, commands inside it included. */
  scriptUs: number;
  /** The same for the floor script. */
  floorUs: number;
}

function evalshaUsec(info: string): { calls: number; usec: number } {
  const m = /^cmdstat_evalsha:calls=(\d+),usec=(\d+)/m.exec(info);
  return { calls: Number(m?.[1] ?? 0), usec: Number(m?.[2] ?? 0) };
}

export async function measureScriptCost(
  redis: Redis,
  redisUrl: string,
  prefix: string,
  calls: number,
): Promise<ScriptCost> {
  await redis.script('LOAD', FLOOR);
  const options = { url: redisUrl, connectTimeoutMs: 2_000, commandTimeoutMs: 5_000 };
  const real = new RespClient(options);
  const floor = new FloorClient(options);
  await Promise.all([real.connect(), floor.connect()]);
  const now = Date.now();
  const request = (i: number): CheckRequest => {
    // Neighbouring calls share little, as in bench:enforce's request mix; every hash exists already
    // after the warm-up pass, as in a steady state.
    const entities = { key: i % 200, user: i % 200, device: (i * 13) % 151, ip: (i * 7) % 307, asn: i % 23 };
    const limits = Object.entries(entities).flatMap(([d, id]): LimitSpec[] => {
      const key = `{${prefix}:lim}:floor:${d}:${id}`;
      return [
        { name: `${d}:1m`, key, slot: 'm', limit: 1e9, windowMs: 60_000, buckets: 12 },
        { name: `${d}:24h`, key, slot: 'd', limit: 1e9, windowMs: 86_400_000, buckets: 96 },
      ];
    });
    const fields = sampleEventFields(i % 200, i % 701, now + i);
    const event = { stream: `{${prefix}:lim}:floor:usage`, maxLen: 100_000, fields, when: 'always' as const };
    return { now: now + i, mode: 'enforce', cost: 1, limits, event };
  };
  const perCall = async (client: RespClient) => {
    const limiter = createSlidingWindowLimiter(client);
    const pass = async (from: number, count: number) => {
      for (let i = 0; i < count; i += 32) {
        await Promise.all(
          Array.from({ length: Math.min(32, count - i) }, (_, j) => limiter.check(request(from + i + j))),
        );
      }
    };
    // The first call loads the script (EVAL); the warm-up pass creates every hash.
    await pass(0, 1_000);
    const before = evalshaUsec(await redis.info('commandstats'));
    await pass(1_000, calls);
    const after = evalshaUsec(await redis.info('commandstats'));
    return (after.usec - before.usec) / Math.max(1, after.calls - before.calls);
  };
  try {
    const scriptUs = await perCall(real);
    const floorUs = await perCall(floor);
    return { calls, scriptUs, floorUs };
  } finally {
    real.disconnect();
    floor.disconnect();
  }
}
