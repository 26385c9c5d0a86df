import { defineConfig, mergeConfig } from 'vitest/config';
import base from './vitest.config.ts';

// The red-team threshold check (npm run test:scenarios): small versions of every simulator
// scenario with the thresholds detection must meet. Kept out of `npm test` until it does.
export default mergeConfig(
  base,
  defineConfig({
    test: { include: ['test/simulator/scenarios.check.ts'], testTimeout: 600_000, hookTimeout: 600_000 },
  }),
);
