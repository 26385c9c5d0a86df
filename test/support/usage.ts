import type { Redis } from 'ioredis';
import { unpackUsageFields } from '../../src/usage/event.ts';
import { fieldsOf } from '../../src/usage/ingest.ts';

/** The usage stream's newest entries, newest first, each as its short-named fields (src/usage/event.ts). */
export async function usageEntries(
  redis: Redis,
  stream: string,
  count = 500,
): Promise<Array<Record<string, string>>> {
  const entries = await redis.xrevrange(stream, '+', '-', 'COUNT', count);
  return entries.flatMap(([, flat]) => {
    const fields = unpackUsageFields(fieldsOf(flat));
    return fields ? [fields] : [];
  });
}
