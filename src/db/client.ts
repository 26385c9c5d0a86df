import { PrismaPg } from '@prisma/adapter-pg';
import { PrismaClient } from '../generated/prisma/client.ts';

export type Db = PrismaClient;

export function createDb(connectionString: string, connectTimeoutMs: number): Db {
  const adapter = new PrismaPg({
    connectionString,
    connectionTimeoutMillis: connectTimeoutMs,
    max: 10,
  });
  return new PrismaClient({ adapter });
}

export { Prisma } from '../generated/prisma/client.ts';
