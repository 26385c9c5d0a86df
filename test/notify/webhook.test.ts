import { randomBytes } from 'node:crypto';
import { createServer, type IncomingHttpHeaders, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Writable } from 'node:stream';
import { type Job, Queue, UnrecoverableError, Worker } from 'bullmq';
import type { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from 'vitest';
import type { Context } from '../../src/context.ts';
import { createLogger } from '../../src/logger.ts';
import type { Notifier } from '../../src/notify/notifier.ts';
import {
  createWebhookNotifier,
  DELIVERY_HEADER,
  EVENT_HEADER,
  SIGNATURE_HEADER,
  signWebhookBody,
  verifyWebhookSignature,
} from '../../src/notify/webhook.ts';
import type { NotificationMessage } from '../../src/queues/definitions.ts';
import { connectRedis, createRedis } from '../../src/redis/client.ts';
import { createNotifyProcessor, REMOVED_SECRET } from '../../workers/notify.ts';

const SECRET = 'whsec_test_0123456789abcdef';
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

type Reply = number | 'hang';

interface Received {
  headers: IncomingHttpHeaders;
  body: string;
  /** What the receiver answered. */
  reply: Reply;
}

/** A stand-in for the operator's endpoint: records each request and answers from a script. */
async function startReceiver() {
  const requests: Received[] = [];
  let script: Reply[] = [];
  let fallback: Reply = 204;
  const server = createServer(async (req, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const reply = script.shift() ?? fallback;
    requests.push({ headers: req.headers, body: Buffer.concat(chunks).toString('utf8'), reply });
    if (reply === 'hang') return;
    res.writeHead(reply, { 'content-type': 'application/json' }).end('{"ok":false,"echo":"ignored"}');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/hooks/gatehouse?key=provider-key`,
    requests,
    /** The next requests get these answers, later ones `then`. */
    answer(next: Reply[], then: Reply = 204) {
      script = [...next];
      fallback = then;
    },
    reset() {
      requests.length = 0;
      script = [];
      fallback = 204;
    },
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.close((err) => (err ? reject(err) : resolve()));
        server.closeAllConnections();
      }),
  };
}

const emailMessage = (overrides: Partial<NotificationMessage> = {}): NotificationMessage => ({
  type: 'verify_email',
  to: 'alice@example.com',
  accountId: `acc_${randomBytes(6).toString('hex')}`,
  secret: `vt_${randomBytes(24).toString('base64url')}`,
  expiresAt: new Date(Date.now() + 3600_000).toISOString(),
  ...overrides,
});

let receiver: Awaited<ReturnType<typeof startReceiver>>;

beforeAll(async () => {
  receiver = await startReceiver();
});
afterAll(async () => {
  await receiver.close();
});
afterEach(() => receiver.reset());

const notifierWith = (timeoutMs = 2_000) =>
  createWebhookNotifier({ url: receiver.url, secret: SECRET, timeoutMs });

describe('webhook notifier: request', () => {
  it('posts the e-mail token as `token`, with event, delivery and signature headers', async () => {
    const msg = emailMessage();
    await notifierWith().send(msg);

    expect(receiver.requests).toHaveLength(1);
    const { headers, body } = receiver.requests[0]!;
    expect(JSON.parse(body)).toEqual({
      type: 'verify_email',
      to: 'alice@example.com',
      token: msg.secret,
      accountId: msg.accountId,
      expiresAt: msg.expiresAt,
    });
    expect(headers['content-type']).toBe('application/json');
    expect(headers[EVENT_HEADER.toLowerCase()]).toBe('verify_email');
    expect(headers[DELIVERY_HEADER.toLowerCase()]).toMatch(UUID);
    expect(headers[SIGNATURE_HEADER.toLowerCase()]).toMatch(/^t=\d+,v1=[0-9a-f]{64}$/);
  });

  it('posts the SMS code as `code`', async () => {
    const msg = emailMessage({ type: 'verify_phone', to: '+447700900123', secret: '482913' });
    await notifierWith().send(msg);
    const payload = JSON.parse(receiver.requests[0]!.body) as Record<string, unknown>;
    expect(payload).toEqual({
      type: 'verify_phone',
      to: '+447700900123',
      code: '482913',
      accountId: msg.accountId,
      expiresAt: msg.expiresAt,
    });
    expect(receiver.requests[0]!.headers[EVENT_HEADER.toLowerCase()]).toBe('verify_phone');
  });

  it('uses the delivery id it is given', async () => {
    await notifierWith().send(emailMessage(), { deliveryId: '6f1c2a4e-0000-8000-8000-000000000001' });
    expect(receiver.requests[0]!.headers[DELIVERY_HEADER.toLowerCase()]).toBe(
      '6f1c2a4e-0000-8000-8000-000000000001',
    );
  });

  it('sends credentials in the URL as Basic authorization, not in the request line', async () => {
    const url = new URL(receiver.url);
    url.username = 'gatehouse';
    url.password = 'p%40ss word';
    await createWebhookNotifier({ url: url.href, secret: SECRET, timeoutMs: 2_000 }).send(emailMessage());
    const expected = `Basic ${Buffer.from('gatehouse:p@ss word').toString('base64')}`;
    expect(receiver.requests[0]!.headers.authorization).toBe(expected);
  });
});

describe('webhook signature', () => {
  async function signedRequest() {
    await notifierWith().send(emailMessage());
    const { headers, body } = receiver.requests[0]!;
    const header = headers[SIGNATURE_HEADER.toLowerCase()] as string;
    const t = Number(/t=(\d+)/.exec(header)![1]);
    return { header, body, t };
  }

  it('verifies against the raw body, as a string or as bytes', async () => {
    const { header, body } = await signedRequest();
    expect(verifyWebhookSignature(SECRET, header, body)).toBe(true);
    expect(verifyWebhookSignature(SECRET, header, Buffer.from(body, 'utf8'))).toBe(true);
  });

  it('fails with a wrong secret', async () => {
    const { header, body } = await signedRequest();
    expect(verifyWebhookSignature('whsec_some_other_secret_value', header, body)).toBe(false);
  });

  it('fails when the body was changed', async () => {
    const { header, body } = await signedRequest();
    const tampered = body.replace('alice@example.com', 'mallory@example.com');
    expect(tampered).not.toBe(body);
    expect(verifyWebhookSignature(SECRET, header, tampered)).toBe(false);
    expect(verifyWebhookSignature(SECRET, header, `${body} `)).toBe(false);
  });

  it('fails outside the tolerance, in the past or the future', async () => {
    const { header, body, t } = await signedRequest();
    expect(verifyWebhookSignature(SECRET, header, body, 300, (t + 299) * 1000)).toBe(true);
    expect(verifyWebhookSignature(SECRET, header, body, 300, (t + 301) * 1000)).toBe(false);
    expect(verifyWebhookSignature(SECRET, header, body, 300, (t - 301) * 1000)).toBe(false);
    expect(verifyWebhookSignature(SECRET, header, body, 60, (t + 61) * 1000)).toBe(false);
  });

  it('fails when the timestamp in the header was moved', async () => {
    const { header, body, t } = await signedRequest();
    const moved = header.replace(`t=${t}`, `t=${t + 1}`);
    expect(verifyWebhookSignature(SECRET, moved, body, 300, t * 1000)).toBe(false);
  });

  it('accepts any matching v1 entry, for secret rotation', () => {
    const body = '{"type":"verify_email"}';
    const now = Date.now();
    const oldSig = signWebhookBody('whsec_old_secret_0123456789', body, now / 1000);
    const newSig = signWebhookBody(SECRET, body, now / 1000);
    const both = `${oldSig},v1=${newSig.split('v1=')[1]}`;
    expect(verifyWebhookSignature(SECRET, both, body, 300, now)).toBe(true);
    expect(verifyWebhookSignature('whsec_old_secret_0123456789', both, body, 300, now)).toBe(true);
  });

  it('rejects missing or malformed headers', () => {
    const body = '{}';
    expect(verifyWebhookSignature(SECRET, undefined, body)).toBe(false);
    expect(verifyWebhookSignature(SECRET, '', body)).toBe(false);
    expect(verifyWebhookSignature(SECRET, 'v1=abc', body)).toBe(false);
    expect(verifyWebhookSignature(SECRET, `t=${Math.floor(Date.now() / 1000)}`, body)).toBe(false);
    expect(verifyWebhookSignature(SECRET, 't=soon,v1=00', body)).toBe(false);
  });
});

describe('webhook notifier: failures', () => {
  it('a 500 throws a retryable error that names neither the token nor the secret', async () => {
    receiver.answer([500]);
    const msg = emailMessage();
    const err = await notifierWith()
      .send(msg)
      .then(
        () => undefined,
        (e: unknown) => e as Error,
      );
    expect(err).toBeInstanceOf(Error);
    expect(err).not.toBeInstanceOf(UnrecoverableError);
    expect(err!.message).toContain('HTTP 500');
    expect(err!.message).not.toContain(msg.secret);
    expect(err!.message).not.toContain(SECRET);
    // The query string can carry a provider key.
    expect(err!.message).not.toContain('provider-key');
  });

  it('408 and 429 are retryable', async () => {
    receiver.answer([408, 429]);
    for (const status of [408, 429]) {
      const err = await notifierWith()
        .send(emailMessage())
        .catch((e: unknown) => e);
      expect(err).toBeInstanceOf(Error);
      expect(err).not.toBeInstanceOf(UnrecoverableError);
      expect((err as Error).message).toContain(`HTTP ${status}`);
    }
  });

  it('a 400 throws UnrecoverableError', async () => {
    receiver.answer([400, 404]);
    await expect(notifierWith().send(emailMessage())).rejects.toBeInstanceOf(UnrecoverableError);
    await expect(notifierWith().send(emailMessage())).rejects.toBeInstanceOf(UnrecoverableError);
  });

  it('a redirect is not followed and is retryable', async () => {
    receiver.answer([302]);
    const err = await notifierWith()
      .send(emailMessage())
      .catch((e: unknown) => e);
    expect(err).not.toBeInstanceOf(UnrecoverableError);
    expect((err as Error).message).toContain('HTTP 302');
    expect(receiver.requests).toHaveLength(1);
  });

  it('a receiver that never answers times out', async () => {
    receiver.answer(['hang']);
    const started = Date.now();
    const err = await notifierWith(300)
      .send(emailMessage())
      .catch((e: unknown) => e);
    const elapsed = Date.now() - started;
    expect(err).toBeInstanceOf(Error);
    expect(err).not.toBeInstanceOf(UnrecoverableError);
    expect((err as Error).message).toContain('did not answer within 300 ms');
    expect(elapsed).toBeGreaterThanOrEqual(250);
    expect(elapsed).toBeLessThan(2_000);
  });

  it('an unreachable receiver throws a retryable error', async () => {
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const { port } = closed.address() as AddressInfo;
    await new Promise<void>((resolve) => closed.close(() => resolve()));
    const notifier = createWebhookNotifier({
      url: `http://127.0.0.1:${port}/`,
      secret: SECRET,
      timeoutMs: 1_000,
    });
    const err = await notifier.send(emailMessage()).catch((e: unknown) => e);
    expect(err).not.toBeInstanceOf(UnrecoverableError);
    expect((err as Error).message).toMatch(/unreachable \(ECONNREFUSED\)/);
  });
});

describe('notify queue end to end', () => {
  const prefix = `{t${randomBytes(5).toString('hex')}:bull}`;
  const logs: string[] = [];
  let queueConnection: Redis;
  let workerConnection: Redis;
  let queue: Queue<NotificationMessage>;
  let worker: Worker<NotificationMessage>;

  beforeAll(async () => {
    const url = inject('redisUrl');
    queueConnection = createRedis({ url, connectTimeoutMs: 2_000 });
    workerConnection = createRedis({ url, connectTimeoutMs: 2_000, forWorkers: true });
    await connectRedis(queueConnection, 2_000);
    await connectRedis(workerConnection, 2_000);
    const logger = createLogger(
      'info',
      new Writable({
        write(chunk, _enc, cb) {
          logs.push(String(chunk));
          cb();
        },
      }),
    );
    // The processor reads only the logger from the context.
    const ctx = { logger } as unknown as Context;
    const notifier: Notifier = createWebhookNotifier({ url: receiver.url, secret: SECRET, timeoutMs: 2_000 });
    const processor = createNotifyProcessor(notifier);
    queue = new Queue<NotificationMessage>('notify', { connection: queueConnection, prefix });
    worker = new Worker<NotificationMessage>(
      'notify',
      (job: Job<NotificationMessage>) => processor.process(job, ctx),
      {
        connection: workerConnection,
        prefix,
        concurrency: 2,
      },
    );
    await worker.waitUntilReady();
  });

  afterAll(async () => {
    await worker?.close();
    await queue?.obliterate({ force: true });
    await queue?.close();
    await queueConnection?.quit();
    await workerConnection?.quit();
  });

  /** Resolves when the job for this account completed, or failed for good. */
  function settled(accountId: string): Promise<'completed' | 'failed'> {
    return new Promise((resolve) => {
      const onCompleted = (job: Job<NotificationMessage>) => {
        if (job.data.accountId !== accountId) return;
        done('completed');
      };
      const onFailed = (job: Job<NotificationMessage> | undefined) => {
        if (job?.data.accountId !== accountId || !job.finishedOn) return;
        done('failed');
      };
      const done = (outcome: 'completed' | 'failed') => {
        worker.off('completed', onCompleted);
        worker.off('failed', onFailed);
        resolve(outcome);
      };
      worker.on('completed', onCompleted);
      worker.on('failed', onFailed);
    });
  }

  const retrying = { attempts: 5, backoff: { type: 'exponential', delay: 25 } };

  it('retries a failing receiver and delivers exactly once', async () => {
    receiver.answer([500, 503], 204);
    const msg = emailMessage();
    const outcome = settled(msg.accountId);
    const added = await queue.add('verify_email', msg, retrying);
    expect(await outcome).toBe('completed');

    // Two failures, then the one delivery; nothing after it.
    expect(receiver.requests.map((r) => r.reply)).toEqual([500, 503, 204]);
    // Every attempt carries the same delivery id, so a receiver can drop repeats.
    const ids = new Set(receiver.requests.map((r) => r.headers[DELIVERY_HEADER.toLowerCase()]));
    expect(ids.size).toBe(1);
    expect([...ids][0]).toMatch(UUID);
    for (const r of receiver.requests) {
      expect(
        verifyWebhookSignature(SECRET, r.headers[SIGNATURE_HEADER.toLowerCase()] as string, r.body),
      ).toBe(true);
      expect(JSON.parse(r.body)).toMatchObject({ token: msg.secret });
    }

    const job = await queue.getJob(added.id!);
    expect(job?.attemptsMade).toBe(3);
    expect(job?.returnvalue).toEqual({ delivered: true, notifier: 'webhook' });
    // Once delivered, the token no longer sits in Redis with the finished job.
    expect(job?.data.secret).toBe(REMOVED_SECRET);
  });

  it('fails after the last attempt and logs it without the secret', async () => {
    receiver.answer([], 500);
    const msg = emailMessage();
    const outcome = settled(msg.accountId);
    const added = await queue.add('verify_email', msg, { ...retrying, attempts: 3 });
    expect(await outcome).toBe('failed');

    expect(receiver.requests).toHaveLength(3);
    const job = await queue.getJob(added.id!);
    expect(job?.attemptsMade).toBe(3);
    expect(job?.failedReason).toContain('HTTP 500');
    expect(job?.data.secret).toBe(REMOVED_SECRET);

    const line = logs.find((l) => l.includes(msg.accountId));
    expect(line).toBeDefined();
    expect(JSON.parse(line!)).toMatchObject({
      level: 50,
      msg: 'verification message not delivered',
      to: 'a***@example.com',
      attempts: 3,
      notifier: 'webhook',
    });
    expect(logs.join('')).not.toContain(msg.secret);
    expect(logs.join('')).not.toContain('alice@example.com');
  });

  it('a refused request (400) fails at once, without retries', async () => {
    receiver.answer([400], 204);
    const msg = emailMessage();
    const outcome = settled(msg.accountId);
    const added = await queue.add('verify_email', msg, retrying);
    expect(await outcome).toBe('failed');
    expect(receiver.requests).toHaveLength(1);
    const job = await queue.getJob(added.id!);
    expect(job?.attemptsMade).toBe(1);
    expect(job?.data.secret).toBe(REMOVED_SECRET);
  });

  it('does not send a verification that already expired', async () => {
    const msg = emailMessage({ expiresAt: new Date(Date.now() - 1_000).toISOString() });
    const outcome = settled(msg.accountId);
    const added = await queue.add('verify_email', msg, retrying);
    expect(await outcome).toBe('failed');
    expect(receiver.requests).toHaveLength(0);
    const job = await queue.getJob(added.id!);
    expect(job?.failedReason).toContain('expired');
    expect(job?.attemptsMade).toBe(1);
  });
});
