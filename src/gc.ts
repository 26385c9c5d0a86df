import { setFlagsFromString } from 'node:v8';

// API processes also serve with a larger young generation, which cannot be set from here: V8 sizes
// it when the process starts, and setFlagsFromString afterwards changes nothing. `npm start` and
// `npm run start:api` pass `--max-semi-space-size=64` (package.json). A decision's garbage is
// short-lived, so a larger young generation means fewer scavenges for the same work: at
// saturation ~5 a second of ~3.9 ms each, against ~19 of ~1.9 ms at 16 MB. Measured with `npm run
// bench:enforce`, two pairs of runs on a 2-core machine: the API process's CPU per decision at
// saturation 100-117 µs against 134-137 µs with V8's default, the main thread's GC share 1.9%
// against 4.5%, for ~100 MiB more peak RSS (466-495 MiB against 348-394 MiB). The longer pauses did
// not move the p99 at half load measurably either way.

/**
 * V8 tuning for a process that serves the API: allocation-site pretenuring off.
 *
 * V8 watches where objects are allocated, and when most objects from one allocation site survive a
 * young-generation GC (a scavenge), it allocates that site's objects directly in the old
 * generation from then on. It does not revisit the choice: objects allocated in the old generation
 * never come back to the young one, where survival is measured. A moment of high survival is enough
 * to trigger it, such as requests piling up while PostgreSQL answers slowly at start-up. After that,
 * every request allocates its objects in the old generation. They die young but stay until the
 * next full GC. Until then, as roots of every scavenge, they keep the young objects they point to
 * alive, and those get promoted in turn.
 *
 * Measured with the enforcement benchmark's half-load run (4,000 decisions/s, 2 cores):
 * - per scavenge, ~700 KB survived with pretenuring and ~355 KB without;
 * - mean scavenge pause 3.2 ms → 2.1 ms;
 * - a full GC every ~8 s → none in a 10 s run;
 * - p99 6.1–7.0 ms → 4.9 ms.
 * A handler that only parses the body, in the same process, had 3.4 MB survive each scavenge with
 * pretenuring and 7 KB without. The bare node:http baseline, which never gets pretenured, has 7 KB.
 *
 * What this gives up is pretenuring's gain for long-lived data built in bulk (the ASN tables at
 * start-up), a one-off cost. The analysis stages, which build large maps, did not notice it in an
 * `all` process: the simulator's 10-day mixed run spent 26.2 s in analysis with pretenuring off
 * and 26.8 s with it on. Worker-only processes keep V8's default all the same. An explicit
 * `--allocation-site-pretenuring` on the command line wins.
 */
export function tuneGcForServing(execArgv: readonly string[] = process.execArgv): boolean {
  if (execArgv.some((arg) => /^--(no-)?allocation[-_]site[-_]pretenuring$/.test(arg))) return false;
  setFlagsFromString('--no-allocation-site-pretenuring');
  return true;
}
