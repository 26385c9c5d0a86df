import type { Redis } from 'ioredis';

// Redis bookkeeping for bench/enforce.ts: the server's version and pid, INFO commandstats deltas
// (how many commands one decision costs) and removal of every key the benchmark wrote.

export interface RedisServerInfo {
  version: string;
  pid: number;
}

function infoField(info: string, field: string): string | undefined {
  return new RegExp(`^${field}:(.*)$`, 'm').exec(info)?.[1]?.trim();
}

export async function serverInfo(redis: Redis): Promise<RedisServerInfo> {
  const info = await redis.info('server');
  return {
    version: infoField(info, 'redis_version') ?? 'unknown',
    pid: Number(infoField(info, 'process_id') ?? 0),
  };
}

/** calls per command name from INFO commandstats (`cmdstat_<name>:calls=N,...`). */
export async function commandCalls(redis: Redis): Promise<Map<string, number>> {
  const info = await redis.info('commandstats');
  const calls = new Map<string, number>();
  for (const m of info.matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)) calls.set(m[1]!, Number(m[2]));
  return calls;
}

export function callsDelta(before: Map<string, number>, after: Map<string, number>): Map<string, number> {
  const delta = new Map<string, number>();
  for (const [name, n] of after) {
    const d = n - (before.get(name) ?? 0);
    if (d > 0) delta.set(name, d);
  }
  return delta;
}

/** Commands a client sends itself; everything else in the delta ran inside a script. */
export const SCRIPT_ENTRY_COMMANDS = ['evalsha', 'eval', 'evalsha_ro', 'eval_ro', 'fcall', 'fcall_ro'];

export { deleteMatching } from '../../src/redis/client.ts';
