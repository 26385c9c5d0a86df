// Prisma CLI configuration. Gatehouse applies its migrations itself (see src/db/migrate.ts), so the
// CLI is only needed to generate the client; `prisma migrate deploy` still works for operators online.
import { defineConfig } from 'prisma/config';

export default defineConfig({
  schema: 'prisma/schema.prisma',
  migrations: { path: 'prisma/migrations' },
  datasource: {
    url: process.env.DATABASE_URL ?? 'postgresql://postgres@127.0.0.1:5432/gatehouse',
  },
});
