import { UnrecoverableError } from 'bullmq';
import { candidatePairs, saveLinks, weighPairs } from '../src/detection/link.ts';
import { type SignupContext, signupSignals } from '../src/signals/extract.ts';
import { defineProcessor } from './processor.ts';

type Flags = {
  hosting?: boolean;
  tlsFingerprint?: string | null;
  disposable?: boolean;
  publicProvider?: boolean;
};

/**
 * Writes an account's signup signals into the inverted index (signal kind + value -> account),
 * stamped with the account's own creation time (event time, so imported history indexes the same
 * way as live signups), then links the account to those it shares signals with. Idempotent: a
 * retried job finds the rows already there and recomputes the same links.
 */
export const enrich = defineProcessor({
  queue: 'enrich',
  async process(job, ctx) {
    const account = await ctx.db.account.findUnique({ where: { id: job.data.accountId } });
    if (!account) throw new UnrecoverableError(`account ${job.data.accountId} no longer exists`);
    const attempt = await ctx.db.signupAttempt.findFirst({
      where: { accountId: account.id },
      orderBy: { createdAt: 'asc' },
    });
    const flags = (attempt?.signals ?? {}) as Flags;
    const context: SignupContext = {
      emailCanonicalHash: account.emailCanonicalHash,
      emailDomain: account.emailDomain,
      emailPattern: attempt?.emailPattern ?? null,
      publicProvider: flags.publicProvider ?? false,
      disposable: flags.disposable ?? false,
      ip: attempt?.ip ?? null,
      subnet: attempt?.subnet ?? null,
      asn: attempt?.asn ?? null,
      hosting: flags.hosting ?? false,
      fingerprint: attempt?.fingerprint ?? null,
      tlsFingerprint: flags.tlsFingerprint ?? null,
      userAgent: attempt?.userAgent ?? null,
      phone: account.phone,
    };
    const signals = signupSignals(context);
    const { count } = await ctx.db.signal.createMany({
      data: signals.map((s) => ({ ...s, accountId: account.id, at: account.createdAt })),
      skipDuplicates: true,
    });
    // Link the new account at once, at a cost bounded by the bucket caps; clusters form at the
    // next analysis run.
    const pairs = await candidatePairs(ctx.db, [account.id], ctx.policy.detection, new Date());
    const links = weighPairs(pairs, ctx.policy.detection);
    await saveLinks(ctx.db, links);
    return { signals: signals.length, written: count, links: links.length };
  },
});
