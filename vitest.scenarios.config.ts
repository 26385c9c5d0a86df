import { defineConfig } from 'vitest/config';
import base from './vitest.config.ts';

// The red-team threshold check (npm run test:scenarios): small versions of every simulator
// scenario with the thresholds detection must meet. Part of `npm test` too; this runs it alone.
// mergeConfig would concatenate the include lists (and run the whole suite too): replace it.
export default defineConfig({
  test: {
    ...base.test,
    include: ['test/simulator/scenarios.test.ts'],
    testTimeout: 600_000,
    hookTimeout: 600_000,
  },
});
