import type { Redis } from 'ioredis';
import type { AuditLog } from '../audit/audit.ts';
import type { Db } from '../db/client.ts';

// The operator's emergency switch: multiply every quota by a factor at once (0.5 halves them all),
// on every instance, without a restart. PostgreSQL holds it; pub/sub tells every instance.

export interface EmergencySwitch {
  factor(): number;
  set(factor: number, actor: string): Promise<void>;
  /** Loads the stored factor (at start and on every invalidation message). */
  refresh(): Promise<void>;
  handleInvalidation(message: string): void;
}

export const EMERGENCY_INVALIDATION = JSON.stringify({ type: 'emergency' });
const KEY = 'emergency_factor';

export function createEmergencySwitch(deps: {
  db: Db;
  redis: Pick<Redis, 'publish'>;
  channel: string;
  audit: AuditLog;
}): EmergencySwitch {
  let current = 1;
  const refresh = async () => {
    const row = await deps.db.instanceSetting.findUnique({ where: { key: KEY } });
    const value = row ? Number(row.value) : 1;
    current = Number.isFinite(value) && value >= 0 && value <= 1 ? value : 1;
  };
  return {
    factor: () => current,
    refresh,
    async set(factor, actor) {
      await deps.db.instanceSetting.upsert({
        where: { key: KEY },
        create: { key: KEY, value: String(factor) },
        update: { value: String(factor) },
      });
      await deps.audit.record({
        actor,
        action: 'enforcement.emergency_factor',
        subjectType: 'enforcement',
        subjectId: 'emergency',
        data: { factor },
      });
      current = factor;
      await deps.redis.publish(deps.channel, EMERGENCY_INVALIDATION);
    },
    handleInvalidation(message) {
      if (message === EMERGENCY_INVALIDATION) void refresh().catch(() => undefined);
    },
  };
}
