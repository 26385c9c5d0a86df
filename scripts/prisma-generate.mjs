// Generates the Prisma client after `npm install`. The Prisma CLI tries to download a native schema
// engine before every command, even `generate`, which needs none (the client's query compiler is
// WASM). Pointing the engine at /bin/false lets generation run on machines without internet.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';

if (!existsSync('node_modules/prisma')) {
  // Production install without dev dependencies: the client must have been generated already.
  process.exit(0);
}
const env = { ...process.env, PRISMA_HIDE_UPDATE_MESSAGE: '1' };
env.PRISMA_SCHEMA_ENGINE_BINARY ??= '/bin/false';
const result = spawnSync('npx', ['prisma', 'generate'], { stdio: 'inherit', env });
process.exit(result.status ?? 1);
