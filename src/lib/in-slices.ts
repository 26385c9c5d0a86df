/** Ids (or rows) one statement carries by default: a statement may hold at most 65,535 parameters. */
export const STATEMENT_SLICE = 10_000;

/**
 * `run` over `items` a slice at a time, one after another, the results (if any) in order: for
 * statements with an id list (`IN (…)`) or a batch of rows that may be more than one statement can
 * carry (a farm's members, say).
 */
export async function inSlices<I, T = never>(
  items: readonly I[],
  size: number,
  run: (slice: I[]) => Promise<T[] | undefined> | Promise<void>,
): Promise<T[]> {
  if (!Number.isInteger(size) || size < 1) throw new RangeError('size must be a positive integer');
  const out: T[] = [];
  for (let i = 0; i < items.length; i += size) {
    const got = await run(items.slice(i, i + size));
    if (got) out.push(...got);
  }
  return out;
}
