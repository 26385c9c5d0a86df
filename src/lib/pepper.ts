import { randomBytes } from 'node:crypto';
import type { Db } from '../db/client.ts';
import type { Logger } from '../logger.ts';

/**
 * The server-side pepper for key and code hashes. Best kept outside the database
 * (GATEHOUSE_PEPPER); without it, one is generated once and stored in PostgreSQL so every instance
 * agrees, at the cost that a database dump then holds it too.
 */
export async function resolvePepper(configured: string | undefined, db: Db, logger: Logger): Promise<string> {
  if (configured) return configured;
  logger.warn('GATEHOUSE_PEPPER is not set: using a pepper kept in PostgreSQL; set it in production');
  await db.instanceSetting.createMany({
    data: [{ key: 'pepper', value: randomBytes(32).toString('base64url') }],
    skipDuplicates: true,
  });
  const row = await db.instanceSetting.findUniqueOrThrow({ where: { key: 'pepper' } });
  return row.value;
}
