/** Ids one statement carries by default: a statement may hold at most 65,535 parameters. */
export const STATEMENT_SLICE = 10_000;

/**
 * `read` over `ids` a slice at a time, one after another, the results in order: for statements
 * with an id list (`IN (…)`) that may be longer than one statement can carry (a farm's members).
 */
export async function inSlices<T>(
  ids: readonly string[],
  size: number,
  read: (slice: string[]) => Promise<T[]>,
): Promise<T[]> {
  if (!Number.isInteger(size) || size < 1) throw new RangeError('size must be a positive integer');
  const out: T[] = [];
  for (let i = 0; i < ids.length; i += size) out.push(...(await read(ids.slice(i, i + size))));
  return out;
}
