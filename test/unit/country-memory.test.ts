import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

const run = promisify(execFile);
const country = fileURLToPath(new URL('../../src/signals/country.ts', import.meta.url));

// In a process of its own, with a real full collection before and after: the test runner's heap
// moves by more than this test measures.
const script = `
const gc = globalThis.gc;
const settle = async () => {
  for (let i = 0; i < 3; i++) { gc(); await new Promise((r) => setImmediate(r)); }
  return process.memoryUsage().heapUsed;
};
const { loadCountryDatabase } = await import(${JSON.stringify(country)});
const before = await settle();
const db = await loadCountryDatabase();
const after = await settle();
process.stdout.write(JSON.stringify({ growth: after - before, runs: db.stats.runs, nl: db.lookup('145.100.0.1') }));
`;

describe('country database memory', () => {
  it('keeps the bundled data off the JS heap once loaded', async () => {
    const { stdout } = await run(
      process.execPath,
      ['--expose-gc', '--import', 'tsx', '--input-type=module', '-e', script],
      { timeout: 60_000 },
    );
    const { growth, runs, nl } = JSON.parse(stdout) as { growth: number; runs: number; nl: string };
    // Sanity: the real data loaded.
    expect(runs).toBeGreaterThan(100_000);
    expect(nl).toBe('NL');
    // The runs live in typed arrays (outside the heap). Holding the loader's arrays of starts (a
    // number or BigInt object per run) as well grew the heap by ~20 MB.
    expect(growth).toBeLessThan(4 * 1024 * 1024);
  }, 90_000);
});
