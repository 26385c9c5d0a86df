import { type Answer, inPool, type Problem, problemOf } from './client.ts';
import { type PlannedEvent, signupDay } from './model.ts';
import { type AccountState, type DriveContext, noteStatus } from './state.ts';

// The live phase: what happens in front of Gatehouse today, the last simulated day, in real time.
// People and farm accounts sign up through the product's back end (a solved captcha each), confirm
// their e-mail with the token the webhook notifier delivers, pass the phone step-up when asked, get
// an API key, and make real calls through the gateway's /v1/enforce.

interface SignupAnswer {
  accountId: string;
  status: string;
  decision: 'allow' | 'challenge';
  reasons: string[];
  next: Array<'verify_email' | 'verify_phone'>;
}

interface AccountAnswer {
  id: string;
  status: string;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** At most `perSecond` starts a second: a day's signups in a minute, not in a millisecond. */
function pacer(perSecond: number): () => Promise<void> {
  const gap = 1000 / perSecond;
  let nextAt = Date.now();
  return async () => {
    const now = Date.now();
    const wait = nextAt - now;
    nextAt = Math.max(nextAt, now) + gap;
    if (wait > 0) await sleep(wait);
  };
}

function signupBody(ctx: DriveContext, state: AccountState, email: string, externalId: string) {
  const a = state.account;
  const c = a.signup;
  return {
    email,
    captchaToken: ctx.hooks.captcha(),
    ip: c.ip,
    externalId,
    ...(c.fingerprint ? { fingerprint: c.fingerprint } : {}),
    ...(c.tlsFingerprint ? { tlsFingerprint: c.tlsFingerprint } : {}),
    ...(c.userAgent ? { userAgent: c.userAgent } : {}),
    ...(c.acceptLanguage ? { acceptLanguage: c.acceptLanguage } : {}),
    ...(a.phoneAtSignup && a.phone ? { phone: a.phone } : {}),
  };
}

/** Signs up every account of the live day, in the order the day brings them. */
export async function liveSignups(ctx: DriveContext, states: AccountState[]): Promise<void> {
  const ordered = [...states].sort((x, y) => x.account.signupAt - y.account.signupAt);
  const pace = pacer(ctx.options.signupsPerSecond);
  let done = 0;
  await inPool(ordered, ctx.options.concurrency, async (state) => {
    await pace();
    await signUp(ctx, state);
    if (++done % 100 === 0) ctx.log(`  live signups: ${done}/${ordered.length}`);
  });
}

async function signUp(ctx: DriveContext, state: AccountState): Promise<void> {
  const a = state.account;
  const day = signupDay(a);
  const body = signupBody(ctx, state, a.email, a.externalId);
  const res = await ctx.api.call<SignupAnswer>('signup', 'POST', '/v1/signups', body);
  state.path = 'live';
  if (res.status === 201) {
    state.id = res.body.accountId;
    state.challengedAtSignup = res.body.decision === 'challenge';
    state.signup = { status: 201, decision: res.body.decision, code: null, reasons: res.body.reasons ?? [] };
    noteStatus(state, res.body.status, day);
    if (res.body.next?.includes('verify_email')) await verifyEmail(ctx, state, day);
    if (res.body.next?.includes('verify_phone')) await stepUp(ctx, state, day);
    // Let in but never through the step-up: no key, no calls; stopped at signup.
    if (!state.activated) state.caughtDay = day;
  } else {
    const problem = problemOf(res);
    state.signup = {
      status: res.status,
      decision: null,
      code: problem.code ?? `http_${res.status}`,
      reasons: problem.reasons ?? [],
    };
    state.blockedAtSignup = true;
    state.caughtDay = day;
    if (![400, 403, 409, 429].includes(res.status))
      ctx.api.gap('POST', '/v1/signups', redact(body), res, 'a signup answered neither 201 nor a refusal');
  }
  if (a.repeatEmail) {
    const again = await ctx.api.call(
      'signup',
      'POST',
      '/v1/signups',
      signupBody(ctx, state, a.repeatEmail, `${a.externalId}-2`),
    );
    state.repeat = { status: again.status, code: problemOf(again).code ?? null };
  }
}

const redact = (body: { captchaToken: string }) => ({ ...body, captchaToken: 'pass-…' });

async function verifyEmail(ctx: DriveContext, state: AccountState, day: number): Promise<void> {
  const id = state.id as string;
  const message = await ctx.hooks.inbox.next(id, 'verify_email', 0);
  if (message?.type !== 'verify_email') {
    ctx.api.gap(
      'POST',
      `/v1/accounts/${id}/verify-email`,
      null,
      { status: 0, body: 'no verify_email webhook within 15 s', headers: new Headers() },
      'the verification e-mail never reached the webhook receiver',
    );
    return;
  }
  const res = await ctx.api.call<AccountAnswer>('signup', 'POST', `/v1/accounts/${id}/verify-email`, {
    token: message.token,
  });
  if (res.status === 200) noteStatus(state, res.body.status, day);
  else
    ctx.api.gap(
      'POST',
      `/v1/accounts/${id}/verify-email`,
      { token: '…' },
      res,
      'a token delivered by the notifier was refused',
    );
}

/** The phone step-up with the account's own number; the outcome is kept with the account. */
export async function stepUp(ctx: DriveContext, state: AccountState, day: number): Promise<string> {
  const id = state.id;
  const phone = state.account.phone;
  let outcome: string;
  if (!id || !phone) outcome = 'no_phone';
  else {
    const before = ctx.hooks.inbox.count(id, 'verify_phone');
    const start = await ctx.api.call('signup', 'POST', `/v1/accounts/${id}/phone`, { phone });
    if (start.status !== 202) outcome = problemOf(start).code ?? `http_${start.status}`;
    else {
      const sms = await ctx.hooks.inbox.next(id, 'verify_phone', before);
      if (sms?.type !== 'verify_phone') outcome = 'no_sms';
      else {
        const check = await ctx.api.call<AccountAnswer>('signup', 'POST', `/v1/accounts/${id}/phone/verify`, {
          code: sms.code,
        });
        outcome = check.status === 200 ? 'verified' : (problemOf(check).code ?? `http_${check.status}`);
        if (check.status === 200) noteStatus(state, check.body.status, day);
      }
    }
  }
  state.stepUps.push({ day, outcome });
  return outcome;
}

/** A key for every account that may hold one. */
export async function issueKeys(ctx: DriveContext, states: AccountState[]): Promise<void> {
  await inPool(states, ctx.options.concurrency, async (state) => {
    if (!state.id || state.status !== 'active') return;
    const res = await ctx.api.call<{ id: string; key: string }>(
      'keys',
      'POST',
      `/v1/accounts/${state.id}/keys`,
      { name: 'default' },
    );
    if (res.status === 201) state.key = { id: res.body.id, secret: res.body.key };
    else
      ctx.api.gap(
        'POST',
        `/v1/accounts/${state.id}/keys`,
        { name: 'default' },
        res,
        'an active account got no key',
      );
  });
}

interface EnforceAnswer {
  decision: 'allow' | 'throttle' | 'deny';
  reason?: string;
  limits?: Array<{ name: string; limit: number }>;
}

/** Splits the day's first `calls` calls off the plan: they go through /v1/enforce now, the rest into the history. */
export function liveSlice(
  events: PlannedEvent[],
  calls: number,
): { live: PlannedEvent[]; rest: PlannedEvent[] } {
  const live: PlannedEvent[] = [];
  const rest: PlannedEvent[] = [];
  let left = calls;
  for (const e of events) {
    const take = Math.min(left, e.cost);
    for (let k = 0; k < take; k++) live.push({ ...e, cost: 1 });
    left -= take;
    if (e.cost > take) rest.push({ ...e, cost: e.cost - take });
  }
  return { live, rest };
}

function learnQuota(ctx: DriveContext, answer: EnforceAnswer, source: string): void {
  if (ctx.quota.user !== null || !answer.limits) return;
  const user =
    answer.limits.find((l) => l.name === 'user:24h') ?? answer.limits.find((l) => l.name === 'key:24h');
  if (!user) return;
  ctx.quota.user = user.limit;
  ctx.quota.device = answer.limits.find((l) => l.name === 'device:24h')?.limit ?? null;
  ctx.quota.source = source;
}

/**
 * Learns the free tier's daily windows before any history is played: one imported person gets a
 * key and the gateway is asked, spending nothing, where that key stands (`user:24h`, `device:24h`).
 */
export async function calibrate(ctx: DriveContext): Promise<void> {
  const person = ctx.states.find((s) => s.account.role === 'legit' && s.id && s.status === 'active');
  if (!person) return;
  await issueKeys(ctx, [person]);
  if (!person.key) return;
  const c = person.account.signup;
  const res = await ctx.api.call<EnforceAnswer>('enforce', 'POST', '/v1/enforce', {
    key: person.key.secret,
    ip: c.ip,
    ...(c.fingerprint ? { fingerprint: c.fingerprint } : {}),
    cost: 0,
  });
  if (res.status === 200) learnQuota(ctx, res.body, 'POST /v1/enforce limits');
}

/** Real gateway calls, interleaved across accounts the way a day's traffic arrives. */
export async function liveEnforce(
  ctx: DriveContext,
  slices: Map<AccountState, PlannedEvent[]>,
): Promise<void> {
  const queue: Array<[AccountState, PlannedEvent]> = [];
  const lists = [...slices.entries()];
  for (let round = 0; ; round++) {
    let any = false;
    for (const [state, events] of lists) {
      const e = events[round];
      if (e) {
        queue.push([state, e]);
        any = true;
      }
    }
    if (!any) break;
  }
  const today = ctx.population.days - 1;
  // A handful in flight: enough to interleave accounts, few enough that a loaded machine measures
  // Gatehouse's decisions rather than its Redis budget.
  await inPool(queue, Math.min(6, ctx.options.concurrency), async ([state, e]) => {
    const body = {
      key: state.key?.secret ?? '',
      ip: e.ip,
      ...(e.fingerprint ? { fingerprint: e.fingerprint } : {}),
      ...(e.tlsFingerprint ? { tlsFingerprint: e.tlsFingerprint } : {}),
      userAgent: e.userAgent,
      endpoint: e.endpoint,
      cost: 1,
      query: e.query,
    };
    const res: Answer<EnforceAnswer> = await ctx.api.call<EnforceAnswer>(
      'enforce',
      'POST',
      '/v1/enforce',
      body,
    );
    state.live.calls++;
    state.planned[today] = (state.planned[today] ?? 0) + 1;
    if (res.status !== 200) {
      ctx.api.gap(
        'POST',
        '/v1/enforce',
        { ...body, key: 'gh_live_…' },
        res,
        'enforcement did not answer 200',
      );
      return;
    }
    learnQuota(ctx, res.body, 'POST /v1/enforce limits');
    const label = res.body.reason ? `${res.body.decision}:${res.body.reason}` : res.body.decision;
    state.live.decisions[label] = (state.live.decisions[label] ?? 0) + 1;
    if (res.body.decision !== 'deny') {
      state.live.served++;
      state.served[today] = (state.served[today] ?? 0) + 1;
    }
  });
}

/** After the last day: does the gateway still let each key through? (`cost: 0` spends nothing.) */
export async function probe(ctx: DriveContext): Promise<void> {
  const keyed = ctx.states.filter((s) => s.key);
  await inPool(keyed, ctx.options.concurrency * 2, async (state) => {
    const res = await ctx.api.call<EnforceAnswer & Problem>('enforce', 'POST', '/v1/enforce', {
      key: state.key?.secret,
      ip: state.account.signup.ip,
      cost: 0,
    });
    state.probe =
      res.status === 200
        ? { decision: res.body.decision, reason: res.body.reason ?? null }
        : { decision: `http_${res.status}`, reason: problemOf(res).code ?? null };
  });
}
