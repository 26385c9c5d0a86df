import { inPool, type Problem, problemOf } from './client.ts';
import { stepUp } from './live.ts';
import { DAY_MS, type PlannedEvent } from './model.ts';
import { type AccountState, type DayRecord, type DriveContext, noteStatus, STOPPED } from './state.ts';
import { dayEvents } from './traffic.ts';

// The history phase: the simulated days before today, in event time. Accounts made on a day
// arrive through /v1/import/accounts, the day's gateway log through /v1/usage-events, then an
// analysis run as of the end of that day, and every account's status is read back from
// /v1/accounts/{id}. Which calls of the day were served follows from those statuses and the limits
// Gatehouse reported: the simulator plays the gateway, Gatehouse decides who may call.

const iso = (ms: number) => new Date(ms).toISOString();

interface ImportAnswer {
  accounts?: Array<{ externalId: string; accountId: string; created: boolean }>;
}

/** Indexes of the records a refused batch names (`accounts.3.createdAt`, `events.12.at`). */
function badIndexes(problem: Problem, field: string): Set<number> {
  const out = new Set<number>();
  for (const e of problem.errors ?? []) {
    const m = new RegExp(`^${field}\\.(\\d+)`).exec(e.field);
    if (m?.[1]) out.add(Number(m[1]));
  }
  return out;
}

export async function importAccounts(ctx: DriveContext, states: AccountState[]): Promise<number> {
  if (!ctx.capabilities.importAccounts || states.length === 0) return 0;
  let imported = 0;
  for (let start = 0; start < states.length; start += 1000) {
    let batch = states.slice(start, start + 1000);
    for (let attempt = 0; attempt < 3 && batch.length > 0; attempt++) {
      const records = batch.map((s) => {
        const a = s.account;
        return {
          externalId: a.externalId,
          email: a.email,
          createdAt: iso(ctx.dayZero + a.signupAt),
          ip: a.signup.ip,
          ...(a.signup.fingerprint ? { fingerprint: a.signup.fingerprint } : {}),
          ...(a.signup.tlsFingerprint ? { tlsFingerprint: a.signup.tlsFingerprint } : {}),
          userAgent: a.signup.userAgent,
          ...(a.phoneAtSignup && a.phone ? { phone: a.phone } : {}),
          status: 'active',
        };
      });
      // The externalId deduplicates, so a batch whose answer was lost may be sent again.
      const res = await ctx.api.call<ImportAnswer>(
        'ingest',
        'POST',
        '/v1/import/accounts',
        { accounts: records },
        { timeoutMs: 300_000, retry: true },
      );
      if (res.status === 200) {
        const ids = new Map((res.body.accounts ?? []).map((r) => [r.externalId, r.accountId]));
        for (const s of batch) {
          const id = ids.get(s.account.externalId);
          if (!id) continue;
          s.id = id;
          s.path = 'import';
          noteStatus(s, 'active', Math.max(0, Math.floor(s.account.signupAt / DAY_MS)));
          imported++;
        }
        break;
      }
      ctx.api.gap(
        'POST',
        '/v1/import/accounts',
        { accounts: records.slice(0, 2) },
        res,
        `import of ${records.length} accounts refused`,
      );
      const bad = res.status === 400 ? badIndexes(problemOf(res), 'accounts') : new Set<number>();
      if (bad.size === 0) {
        if (res.status === 404 || res.status === 405) ctx.capabilities.importAccounts = false;
        for (const s of batch) s.importRefused = problemOf(res).code ?? `http_${res.status}`;
        if (!ctx.capabilities.importAccounts) return imported;
        break;
      }
      for (const i of bad) {
        const s = batch[i];
        if (s)
          s.importRefused =
            problemOf(res).errors?.find((e) => e.field.startsWith(`accounts.${i}.`))?.message ?? 'refused';
      }
      batch = batch.filter((_, i) => !bad.has(i));
    }
  }
  return imported;
}

/** Whether an account calls the API on a day, given what Gatehouse last said about it. */
export function callsToday(state: AccountState, day: number): boolean {
  if (!state.id || !state.activated || state.importRefused) return false;
  const status = state.status ?? 'active';
  if (status === 'active' || status === 'throttled') return true;
  if (status === 'pending') return false;
  // Refused, a person keeps trying; a farm tries for one more day, then drops the account.
  if (state.account.role === 'legit') return true;
  const before = day >= 2 ? state.statusByDay[day - 2] : null;
  return !(before && STOPPED.has(before) && before !== 'throttled');
}

interface LogLine {
  id: string;
  accountId: string;
  at: string;
  ip: string;
  fingerprint?: string;
  tlsFingerprint?: string;
  userAgent: string;
  endpoint: string;
  cost: number;
  decision: 'allow' | 'throttle' | 'deny';
  query: string;
}

/**
 * The day's gateway log. Each planned minute is served up to what the account's status and the
 * daily windows Gatehouse reported leave (per user, and per device across accounts); the rest is
 * logged as denied.
 */
export function gatewayDay(ctx: DriveContext, day: number): LogLine[] {
  const userQuota = ctx.quota.user ?? ctx.quota.assumed;
  const planned: Array<[AccountState, PlannedEvent, number]> = [];
  for (const state of ctx.states) {
    if (!callsToday(state, day)) continue;
    dayEvents(ctx.root, state.account, day).forEach((e, k) => {
      planned.push([state, e, k]);
    });
  }
  planned.sort((x, y) => x[1].at - y[1].at);
  const used = new Map<AccountState, number>();
  const device = new Map<string, number>();
  const lines: LogLine[] = [];
  for (const [state, e, k] of planned) {
    const status = state.status ?? 'active';
    const cap =
      status === 'active'
        ? userQuota
        : status === 'throttled'
          ? (state.throttledQuota ?? Math.floor(userQuota / 4))
          : 0;
    const spent = used.get(state) ?? 0;
    let allowed = Math.max(0, Math.min(e.cost, cap - spent));
    if (ctx.quota.device !== null && e.fingerprint) {
      allowed = Math.max(0, Math.min(allowed, ctx.quota.device - (device.get(e.fingerprint) ?? 0)));
      device.set(e.fingerprint, (device.get(e.fingerprint) ?? 0) + allowed);
    }
    used.set(state, spent + allowed);
    state.planned[day] = (state.planned[day] ?? 0) + e.cost;
    state.served[day] = (state.served[day] ?? 0) + allowed;
    const at = ctx.dayZero + e.at;
    const base = {
      accountId: state.id as string,
      at: iso(at),
      ip: e.ip,
      ...(e.fingerprint ? { fingerprint: e.fingerprint } : {}),
      ...(e.tlsFingerprint ? { tlsFingerprint: e.tlsFingerprint } : {}),
      userAgent: e.userAgent,
      endpoint: e.endpoint,
      query: e.query,
    };
    const id = `${state.account.externalId}.${day}.${k}`;
    if (allowed > 0)
      lines.push({ ...base, id, cost: allowed, decision: status === 'throttled' ? 'throttle' : 'allow' });
    if (allowed < e.cost) lines.push({ ...base, id: `${id}.d`, cost: e.cost - allowed, decision: 'deny' });
  }
  return lines;
}

/** Sends the day's log in batches under the event and body limits; returns events accepted. */
export async function ingest(ctx: DriveContext, lines: LogLine[]): Promise<number> {
  if (!ctx.capabilities.usageEvents || lines.length === 0) return 0;
  const batches: LogLine[][] = [];
  let batch: LogLine[] = [];
  let bytes = 20;
  for (const line of lines) {
    const size = JSON.stringify(line).length + 1;
    if (batch.length >= 5000 || (batch.length > 0 && bytes + size > ctx.options.maxBodyBytes)) {
      batches.push(batch);
      batch = [];
      bytes = 20;
    }
    batch.push(line);
    bytes += size;
  }
  if (batch.length > 0) batches.push(batch);
  let accepted = 0;
  const send = async (events: LogLine[]): Promise<void> => {
    let batch = events;
    for (let attempt = 0; attempt < 3 && batch.length > 0 && ctx.capabilities.usageEvents; attempt++) {
      const res = await ctx.api.call<{ accepted?: number; duplicates?: number }>(
        'ingest',
        'POST',
        '/v1/usage-events',
        { events: batch },
        { timeoutMs: 600_000, retry: true },
      );
      if (res.status === 200) {
        accepted += (res.body.accepted ?? 0) + (res.body.duplicates ?? 0);
        return;
      }
      // The instance takes smaller bodies than assumed: halve until they fit.
      if (res.status === 413 && batch.length > 1) {
        const half = Math.ceil(batch.length / 2);
        await send(batch.slice(0, half));
        await send(batch.slice(half));
        return;
      }
      ctx.api.gap(
        'POST',
        '/v1/usage-events',
        { events: batch.slice(0, 2) },
        res,
        `a batch of ${batch.length} events was refused`,
      );
      if (res.status === 404 || res.status === 405) ctx.capabilities.usageEvents = false;
      const bad = res.status === 400 ? badIndexes(problemOf(res), 'events') : new Set<number>();
      if (bad.size === 0) return;
      batch = batch.filter((_, i) => !bad.has(i));
    }
  };
  await inPool(batches, 2, send);
  return accepted;
}

interface RunAnswer {
  id: string;
  status: string;
  summary: { actions?: Record<string, number> } | null;
  error: string | null;
}

export async function analyse(ctx: DriveContext, asOf: number): Promise<DayRecord['run']> {
  if (!ctx.capabilities.analysis) return null;
  const started = Date.now();
  const body = { asOf: iso(asOf), wait: true };
  let res = await ctx.api.call<RunAnswer>('admin', 'POST', '/v1/analysis/runs', body, { timeoutMs: 360_000 });
  if (res.status !== 202 && res.status !== 200) {
    ctx.api.gap('POST', '/v1/analysis/runs', body, res, 'no analysis run');
    if (res.status === 404 || res.status === 405) ctx.capabilities.analysis = false;
    return null;
  }
  while (res.body.status === 'queued' || res.body.status === 'running') {
    if (Date.now() - started > 600_000) break;
    await new Promise((r) => setTimeout(r, 500));
    const polled = await ctx.api.call<RunAnswer>('admin', 'GET', `/v1/analysis/runs/${res.body.id}`);
    if (polled.status !== 200) {
      ctx.api.gap('GET', `/v1/analysis/runs/${res.body.id}`, null, polled, 'could not follow the run');
      break;
    }
    res = polled;
  }
  if (res.body.status === 'failed')
    ctx.api.gap('POST', '/v1/analysis/runs', body, res, 'the analysis run failed');
  return {
    id: res.body.id,
    status: res.body.status,
    summary: res.body.summary,
    error: res.body.error ?? null,
    ms: Date.now() - started,
  };
}

/**
 * Whether a run may have changed any account, so that reading every status back is worth it: not
 * when its summary says no account was acted on (`accountsActed`, where the instance reports it) or
 * that no cluster carries an action at all.
 */
export function runActed(run: DayRecord['run']): boolean {
  const summary = run?.summary as
    | { actions?: Record<string, number>; accountsActed?: unknown }
    | null
    | undefined;
  if (typeof summary?.accountsActed === 'number') return summary.accountsActed > 0;
  if (!summary?.actions) return true;
  return Object.entries(summary.actions).some(
    ([action, n]) => action !== 'none' && action !== 'review' && n > 0,
  );
}

/** Reads every account's status back, learns cut quotas, and lets challenged accounts try the step-up. */
export async function sweep(ctx: DriveContext, day: number, read: boolean): Promise<void> {
  const existing = ctx.states.filter((s) => s.id);
  if (read) {
    await inPool(existing, ctx.options.concurrency * 2, async (state) => {
      const res = await ctx.api.call<{ status: string }>('signup', 'GET', `/v1/accounts/${state.id}`);
      if (res.status !== 200) {
        ctx.api.gap('GET', `/v1/accounts/${state.id}`, null, res, 'could not read an account');
        return;
      }
      const was = state.status;
      noteStatus(state, res.body.status, day);
      if (res.body.status === 'throttled' && was !== 'throttled') {
        const usage = await ctx.api.call<{ limits?: Array<{ name: string; limit: number }> }>(
          'keys',
          'GET',
          `/v1/accounts/${state.id}/usage`,
        );
        const limit = usage.body.limits?.find((l) => l.name === 'user:24h')?.limit;
        if (usage.status === 200 && limit !== undefined) state.throttledQuota = limit;
      }
    });
  }
  for (const state of existing) state.statusByDay[day] = state.status;
  // A challenged person verifies their phone; a challenged farm account tries its number once.
  const challenged = existing.filter(
    (s) => s.status === 'challenged' && (s.account.role === 'legit' || !s.stepUps.some((u) => u.day > 0)),
  );
  await inPool(challenged, ctx.options.concurrency, async (state) => {
    await stepUp(ctx, state, day);
  });
}
