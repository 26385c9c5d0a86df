import type { Job } from 'bullmq';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { analyseClusters, analyseLinks } from '../../src/detection/run.ts';
import {
  claimRun,
  enterStage,
  finishStage,
  RunTakenOver,
  STAGE_TIMEOUT_MS,
  STAGES,
  stageProgress,
} from '../../src/detection/run-stages.ts';
import { newId } from '../../src/lib/ids.ts';
import { features, runStage } from '../../workers/stages.ts';
import { createAccount, insertAccounts } from '../support/accounts.ts';
import { expectContract } from '../support/contract.ts';
import { startTestApp, type TestApp } from '../support/harness.ts';

// An analysis run goes through four queues (features, link, score, act), one worker each; runs
// never overlap, a duplicate stage job does nothing, and a run abandoned mid-stage does not block
// the runs after it.

let app: TestApp;
// Its own database: these tests put runs in states no other test expects.
beforeAll(async () => {
  app = await startTestApp({ workers: true, ownDatabase: true });
  for (let i = 0; i < 3; i++) await createAccount(app);
});
afterAll(async () => {
  await app.close();
});

const admin = () => ({ authorization: `Bearer ${app.adminToken}` });
const latest = async () => new Date();

async function queuedRun(): Promise<string> {
  const row = await app.ctx.db.analysisRun.create({ data: { id: newId('run'), requestedBy: 'test' } });
  return row.id;
}

describe('analysis runs in stages', () => {
  it('runs every stage on its own queue and reports each in the run', async () => {
    const res = await app.request('POST', '/v1/analysis/runs', { headers: admin(), body: { wait: true } });
    expect(res.status).toBe(202);
    expectContract(res, 'POST', '/v1/analysis/runs');
    const run = res.body as { id: string; status: string; stage: string; summary: Record<string, unknown> };
    expect(run.status).toBe('completed');
    expect(run.stage).toBe('act');
    // Every stage added its part of the summary and its timing.
    expect(run.summary).toMatchObject({ accounts: expect.any(Number), links: expect.any(Number) });
    expect(run.summary).toHaveProperty('clusters');
    expect(run.summary).toHaveProperty('actions');
    expect(Object.keys(run.summary.timings as object).sort()).toEqual(
      ['actionsMs', 'candidatesMs', 'clustersMs', 'featuresMs', 'linksMs'].sort(),
    );
    // The work went through one job per stage, each on its own queue.
    for (const stage of STAGES) {
      const job = await app.ctx.queues.get(stage).getJob(`${run.id}-${stage}`);
      expect(job, `${stage} job`).toBeDefined();
      expect(await job!.getState()).toBe('completed');
    }
  }, 60_000);

  it('never overlaps two runs: the second waits in queued until the first has finished', async () => {
    const [a, b] = await Promise.all([
      app.request('POST', '/v1/analysis/runs', { headers: admin(), body: {} }),
      app.request('POST', '/v1/analysis/runs', { headers: admin(), body: {} }),
    ]);
    const ids = [a.body as { id: string }, b.body as { id: string }].map((r) => r.id);
    const done = await Promise.all(ids.map((id) => app.ctx.runs.wait(id, 60_000)));
    expect(done.map((r) => r?.status)).toEqual(['completed', 'completed']);
    const [first, second] = done.sort((x, y) => Date.parse(x!.startedAt!) - Date.parse(y!.startedAt!));
    expect(Date.parse(second!.startedAt!)).toBeGreaterThanOrEqual(Date.parse(first!.finishedAt!));
  }, 90_000);

  it('enters a stage only from the one before it, so a duplicate job does nothing', async () => {
    // Not through the queues: this drives the bookkeeping directly, with no other run running.
    const id = await queuedRun();
    await app.ctx.db.analysisRun.updateMany({ where: { status: 'running' }, data: { status: 'failed' } });
    const claim = await claimRun(app.ctx.db, id, latest);
    expect(claim.outcome).toBe('claimed');
    expect((await claimRun(app.ctx.db, id, latest)).outcome).toBe('gone');
    expect(await enterStage(app.ctx.db, id, 'score')).toBeNull();
    expect(await enterStage(app.ctx.db, id, 'link')).toBeInstanceOf(Date);
    expect(await enterStage(app.ctx.db, id, 'link')).toBeNull();
    await finishStage(app.ctx.db, id, 'link', { summary: { links: 7, timings: { linksMs: 3 } } });
    const row = await app.ctx.db.analysisRun.findUniqueOrThrow({ where: { id } });
    expect(row).toMatchObject({
      status: 'running',
      stage: 'link',
      summary: { links: 7, timings: { linksMs: 3 } },
    });
    // Another run waits behind it.
    const next = await queuedRun();
    expect(await claimRun(app.ctx.db, next, latest)).toEqual({ outcome: 'busy', runningId: id });
    await app.ctx.db.analysisRun.update({ where: { id }, data: { status: 'failed' } });
    expect((await claimRun(app.ctx.db, next, latest)).outcome).toBe('claimed');
    await app.ctx.db.analysisRun.update({ where: { id: next }, data: { status: 'failed' } });
  });

  it('fails a run whose stage made no progress for too long, and lets the next run go', async () => {
    const stuck = await queuedRun();
    await app.ctx.db.analysisRun.update({
      where: { id: stuck },
      data: { status: 'running', stage: 'score', stageAt: new Date(Date.now() - STAGE_TIMEOUT_MS - 60_000) },
    });
    const res = await app.request('POST', '/v1/analysis/runs', { headers: admin(), body: { wait: true } });
    expect((res.body as { status: string }).status).toBe('completed');
    const row = await app.ctx.db.analysisRun.findUniqueOrThrow({ where: { id: stuck } });
    expect(row.status).toBe('failed');
    expect(row.error).toMatch(/^abandoned: stage made no progress/);
  }, 60_000);

  it('keeps a stage that reports progress from being taken as abandoned, however long it runs', async () => {
    const id = await queuedRun();
    await app.ctx.db.analysisRun.updateMany({ where: { status: 'running' }, data: { status: 'failed' } });
    expect((await claimRun(app.ctx.db, id, latest)).outcome).toBe('claimed');
    expect(await enterStage(app.ctx.db, id, 'link')).toBeInstanceOf(Date);
    // The stage began longer ago than the timeout, and is still at work.
    const began = new Date(Date.now() - STAGE_TIMEOUT_MS - 60_000);
    await app.ctx.db.analysisRun.update({ where: { id }, data: { stageAt: began } });
    await stageProgress(app.ctx.db, id, 'link')(true);
    const next = await queuedRun();
    expect(await claimRun(app.ctx.db, next, latest)).toEqual({ outcome: 'busy', runningId: id });
    const row = await app.ctx.db.analysisRun.findUniqueOrThrow({ where: { id } });
    expect(row.status).toBe('running');
    expect(row.stageAt!.getTime()).toBeGreaterThan(Date.now() - 60_000);
    await app.ctx.db.analysisRun.updateMany({
      where: { id: { in: [id, next] } },
      data: { status: 'failed' },
    });
  });

  it('records progress at most once an interval, and at once when forced', async () => {
    const id = await queuedRun();
    await app.ctx.db.analysisRun.updateMany({ where: { status: 'running' }, data: { status: 'failed' } });
    expect((await claimRun(app.ctx.db, id, latest)).outcome).toBe('claimed');
    let clock = Date.parse('2026-03-01T00:00:00Z');
    const progress = stageProgress(app.ctx.db, id, 'features', 60_000, () => clock);
    const stageAt = async () =>
      (await app.ctx.db.analysisRun.findUniqueOrThrow({ where: { id } })).stageAt!.getTime();
    const claimed = await stageAt();
    clock += 59_000;
    await progress();
    expect(await stageAt()).toBe(claimed);
    clock += 1_000;
    await progress();
    expect(await stageAt()).toBe(clock);
    clock += 5;
    await progress(true);
    expect(await stageAt()).toBe(clock);
    await app.ctx.db.analysisRun.update({ where: { id }, data: { status: 'failed' } });
  });

  it('stops a stage whose run was failed meanwhile, before it writes, and hands nothing on', async () => {
    const id = await queuedRun();
    await app.ctx.db.analysisRun.updateMany({ where: { status: 'running' }, data: { status: 'failed' } });
    expect((await claimRun(app.ctx.db, id, latest)).outcome).toBe('claimed');
    const asOf = await enterStage(app.ctx.db, id, 'link');
    // A worker that went quiet for longer than the timeout: the next run fails it and starts.
    await app.ctx.db.analysisRun.update({
      where: { id },
      data: { stageAt: new Date(Date.now() - STAGE_TIMEOUT_MS - 60_000) },
    });
    const next = await queuedRun();
    expect((await claimRun(app.ctx.db, next, latest)).outcome).toBe('claimed');
    let wrote = false;
    const outcome = await runStage(app.ctx, id, 'link', asOf!, async (progress) => {
      await progress(true);
      wrote = true;
      return { summary: { links: 1 } };
    });
    expect(outcome).toEqual({ stopped: id, stage: 'link' });
    expect(wrote).toBe(false);
    const row = await app.ctx.db.analysisRun.findUniqueOrThrow({ where: { id } });
    expect(row).toMatchObject({ status: 'failed', summary: {} });
    expect(row.error).toMatch(/^abandoned: stage made no progress/);
    expect(await app.ctx.queues.get('score').getJob(`${id}-score`)).toBeUndefined();
    await app.ctx.db.analysisRun.update({ where: { id: next }, data: { status: 'failed' } });
  });

  it('the link stage reports progress, and leaves the links alone once its run is taken over', async () => {
    const [a, b] = (
      await app.ctx.db.account.findMany({ select: { id: true }, orderBy: { id: 'asc' }, take: 2 })
    ).map((r) => r.id);
    const planted = async () => {
      await app.ctx.db.link.deleteMany({});
      await app.ctx.db.link.create({ data: { accountA: a!, accountB: b!, weight: 42, evidence: [] } });
    };
    const stillPlanted = async () =>
      (await app.ctx.db.link.findUnique({ where: { accountA_accountB: { accountA: a!, accountB: b! } } }))
        ?.weight === 42;
    const asOf = new Date();

    await planted();
    const calls: boolean[] = [];
    await analyseLinks(app.ctx.detection, asOf, async (force = false) => {
      calls.push(force);
    });
    // One call per batch and one before the links are replaced (which the planted link did not survive).
    expect(calls).toEqual([false, true]);
    expect(await stillPlanted()).toBe(false);

    await planted();
    await expect(
      analyseLinks(app.ctx.detection, asOf, async (force = false) => {
        if (force) throw new RunTakenOver('run_x', 'link');
      }),
    ).rejects.toBeInstanceOf(RunTakenOver);
    expect(await stillPlanted()).toBe(true);
    await app.ctx.db.link.deleteMany({});
  });

  it('drives the run already queued on a scheduled tick, rather than queue one more behind a long run', async () => {
    await app.ctx.db.analysisRun.updateMany({
      where: { status: { in: ['queued', 'running'] } },
      data: { status: 'failed' },
    });
    const long = await queuedRun();
    expect((await claimRun(app.ctx.db, long, latest)).outcome).toBe('claimed');
    const tick = () => features.process({ data: {} } as Job<{ runId?: string }>, app.ctx);
    const first = (await tick()) as { waiting: string; behind: string };
    const second = (await tick()) as { waiting: string; behind: string };
    expect(first.behind).toBe(long);
    expect(second).toEqual(first);
    const queued = await app.ctx.db.analysisRun.findMany({ where: { status: 'queued' } });
    expect(queued.map((r) => r.id)).toEqual([first.waiting]);
    expect(queued[0]?.requestedBy).toBe('schedule');
    // A run queued for a fixed event time covers only that time: a tick does not take it over.
    await app.ctx.db.analysisRun.update({ where: { id: first.waiting }, data: { asOf: new Date() } });
    const third = (await tick()) as { waiting: string };
    expect(third.waiting).not.toBe(first.waiting);
    // Whatever the ticks left waiting finds its run gone and stops.
    await app.ctx.db.analysisRun.updateMany({
      where: { id: { in: [long, first.waiting, third.waiting] } },
      data: { status: 'failed' },
    });
  });

  it('records a failing stage on the run and hands nothing on', async () => {
    const id = await queuedRun();
    await app.ctx.db.analysisRun.updateMany({ where: { status: 'running' }, data: { status: 'failed' } });
    expect((await claimRun(app.ctx.db, id, latest)).outcome).toBe('claimed');
    const asOf = await enterStage(app.ctx.db, id, 'link');
    const outcome = await runStage(app.ctx, id, 'link', asOf!, async () => {
      throw new Error('could not read the index\nsecond line');
    });
    expect(outcome).toEqual({ failed: id, stage: 'link' });
    const run = await app.ctx.runs.get(id);
    expect(run).toMatchObject({ status: 'failed', stage: 'link', error: 'link: could not read the index' });
    expect(await app.ctx.queues.get('score').getJob(`${id}-score`)).toBeUndefined();
  });
});

describe('the score stage', () => {
  it('keeps a cluster its links still hold and retires one they no longer hold', async () => {
    const t0 = Date.parse('2026-04-01T00:00:00Z');
    const farmA = [0, 1, 2].map((i) => `acc_live_a${i}`);
    const farmB = [0, 1, 2].map((i) => `acc_live_b${i}`);
    await insertAccounts(app, [...farmA, ...farmB], t0);
    const evidence = [{ kind: 'fingerprint', shared: 1, weight: 2, value: 'fp' }];
    const chain = (ids: string[]) =>
      ids.slice(1).map((b, i) => ({ accountA: ids[i]!, accountB: b, weight: 2, evidence }));
    await app.ctx.db.link.createMany({ data: [...chain(farmA), ...chain(farmB)] });
    const asOf = new Date(t0 + 86_400_000);
    const clusterOf = async (id: string) =>
      (await app.ctx.db.clusterMember.findUnique({ where: { accountId: id }, include: { cluster: true } }))
        ?.cluster ?? null;

    await analyseClusters(app.ctx.detection, asOf);
    const a = await clusterOf(farmA[0]!);
    const b = await clusterOf(farmB[0]!);
    expect(a).toMatchObject({ live: true, size: 3 });
    expect(b).toMatchObject({ live: true, size: 3 });

    // Farm B's links are gone (an analyst cleared them, say): its cluster is kept, not live.
    await app.ctx.db.link.deleteMany({ where: { accountA: { in: farmB } } });
    await analyseClusters(app.ctx.detection, asOf);
    expect(await clusterOf(farmA[0]!)).toMatchObject({ id: a!.id, live: true, size: 3 });
    expect(await clusterOf(farmB[0]!)).toBeNull();
    expect(await app.ctx.db.cluster.findUnique({ where: { id: b!.id } })).toMatchObject({
      live: false,
      size: 0,
    });
    // A member's risk is its cluster's score.
    const risks = await app.ctx.db.account.findMany({ where: { id: { in: farmA } }, select: { risk: true } });
    expect(risks.map((r) => r.risk)).toEqual(Array(3).fill(a!.score));
  });
});
