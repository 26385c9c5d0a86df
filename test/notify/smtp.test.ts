import { randomBytes } from 'node:crypto';
import {
  type AddressInfo,
  createServer as createTcpServer,
  type Socket,
  type Server as TcpServer,
} from 'node:net';
import { UnrecoverableError } from 'bullmq';
import { SMTPServer, type SMTPServerAddress } from 'smtp-server';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createSmtpNotifier } from '../../src/notify/smtp.ts';
import type { NotificationMessage } from '../../src/queues/definitions.ts';

interface Delivered {
  from: string | undefined;
  to: string[];
  raw: string;
}

/** What the recipient check answers next: accept, or refuse with this SMTP reply code. */
let rcptReply: number | undefined;
const delivered: Delivered[] = [];
let server: SMTPServer;
let port: number;

beforeAll(async () => {
  server = new SMTPServer({
    authOptional: true,
    disabledCommands: ['STARTTLS'],
    logger: false,
    onRcptTo(_address: SMTPServerAddress, _session, callback) {
      if (rcptReply === undefined) return callback();
      callback(Object.assign(new Error('recipient refused by test server'), { responseCode: rcptReply }));
    },
    onData(stream, session, callback) {
      const chunks: Buffer[] = [];
      stream.on('data', (chunk: Buffer) => chunks.push(chunk));
      stream.on('end', () => {
        const from = session.envelope.mailFrom;
        delivered.push({
          from: from ? from.address : undefined,
          to: session.envelope.rcptTo.map((r) => r.address),
          raw: Buffer.concat(chunks).toString('utf8'),
        });
        callback();
      });
    },
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  port = (server.server.address() as AddressInfo).port;
});

afterAll(async () => {
  await new Promise<void>((resolve) => server.close(() => resolve()));
});

afterEach(() => {
  delivered.length = 0;
  rcptReply = undefined;
});

const message = (overrides: Partial<NotificationMessage> = {}): NotificationMessage => ({
  type: 'verify_email',
  to: 'bob@example.org',
  accountId: `acc_${randomBytes(6).toString('hex')}`,
  secret: `vt_${randomBytes(24).toString('base64url')}`,
  expiresAt: '2031-05-04T10:20:30.000Z',
  ...overrides,
});

/** A header's value, unfolded. */
const header = (raw: string, name: string): string | undefined => {
  const head = raw.split(/\r?\n\r?\n/)[0]!.replace(/\r?\n[ \t]+/g, ' ');
  return new RegExp(`^${name}:\\s*(.*)$`, 'im').exec(head)?.[1]?.trim();
};

/** The message with quoted-printable soft line breaks undone, so a long token reads whole. */
const unwrapped = (raw: string): string => raw.replace(/=\r?\n/g, '');

describe('SMTP notifier', () => {
  it('sends the e-mail token with the right envelope, headers and subject', async () => {
    const notifier = createSmtpNotifier({
      url: `smtp://127.0.0.1:${port}`,
      from: 'Gatehouse <no-reply@gatehouse.test>',
      timeoutMs: 2_000,
    });
    const msg = message();
    try {
      await notifier.send(msg);
    } finally {
      await notifier.close?.();
    }

    expect(delivered).toHaveLength(1);
    const mail = delivered[0]!;
    expect(mail.from).toBe('no-reply@gatehouse.test');
    expect(mail.to).toEqual(['bob@example.org']);
    expect(header(mail.raw, 'From')).toBe('Gatehouse <no-reply@gatehouse.test>');
    expect(header(mail.raw, 'To')).toBe('bob@example.org');
    expect(header(mail.raw, 'Subject')).toBe('Confirm your e-mail address');
    expect(header(mail.raw, 'Auto-Submitted')).toBe('auto-generated');
    expect(header(mail.raw, 'Content-Type')).toMatch(/^multipart\/alternative/);
    const body = unwrapped(mail.raw);
    expect(body).toContain('text/plain');
    expect(body).toContain('text/html');
    // Once in the text part and once in the HTML part.
    expect(body.split(msg.secret).length - 1).toBe(2);
    expect(body).toContain('2031-05-04 10:20 UTC');
  });

  it('sends a phone code to an e-mail-to-SMS gateway address', async () => {
    const notifier = createSmtpNotifier({
      url: `smtp://127.0.0.1:${port}`,
      from: 'no-reply@gatehouse.test',
      timeoutMs: 2_000,
    });
    try {
      await notifier.send(
        message({ type: 'verify_phone', to: '5551234567@sms.example.net', secret: '731204' }),
      );
    } finally {
      await notifier.close?.();
    }
    expect(delivered).toHaveLength(1);
    expect(header(delivered[0]!.raw, 'Subject')).toBe('Your verification code');
    expect(unwrapped(delivered[0]!.raw)).toContain('Your verification code is 731204');
  });

  it('refuses a phone number: SMS needs the webhook notifier', async () => {
    const notifier = createSmtpNotifier({
      url: `smtp://127.0.0.1:${port}`,
      from: 'no-reply@gatehouse.test',
      timeoutMs: 2_000,
    });
    try {
      const err = await notifier
        .send(message({ type: 'verify_phone', to: '+447700900123', secret: '731204' }))
        .catch((e: unknown) => e);
      expect(err).toBeInstanceOf(UnrecoverableError);
      expect((err as Error).message).toBe('SMS delivery needs the webhook notifier');
    } finally {
      await notifier.close?.();
    }
    expect(delivered).toHaveLength(0);
  });

  it('a permanent refusal (5xx) is unrecoverable, a temporary one (4xx) is retryable', async () => {
    const notifier = createSmtpNotifier({
      url: `smtp://127.0.0.1:${port}`,
      from: 'no-reply@gatehouse.test',
      timeoutMs: 2_000,
    });
    const msg = message();
    try {
      rcptReply = 550;
      const permanent = await notifier.send(msg).catch((e: unknown) => e);
      expect(permanent).toBeInstanceOf(UnrecoverableError);
      expect((permanent as Error).message).toContain('550');

      rcptReply = 451;
      const temporary = await notifier.send(msg).catch((e: unknown) => e);
      expect(temporary).toBeInstanceOf(Error);
      expect(temporary).not.toBeInstanceOf(UnrecoverableError);
      expect((temporary as Error).message).toContain('451');

      for (const err of [permanent, temporary]) expect((err as Error).message).not.toContain(msg.secret);
    } finally {
      await notifier.close?.();
    }
    expect(delivered).toHaveLength(0);
  });

  it('keeps the password of SMTP_URL out of its errors', async () => {
    rcptReply = 451;
    const notifier = createSmtpNotifier({
      url: `smtp://mailer:hunter2-password@127.0.0.1:${port}`,
      from: 'no-reply@gatehouse.test',
      timeoutMs: 2_000,
    });
    try {
      const err = await notifier.send(message()).catch((e: unknown) => e);
      expect((err as Error).message).not.toContain('hunter2-password');
    } finally {
      await notifier.close?.();
    }
  });
});

describe('SMTP notifier: unreachable servers', () => {
  const sockets = new Set<Socket>();
  let silent: TcpServer;

  beforeAll(async () => {
    // Accepts connections and never sends the SMTP greeting.
    silent = createTcpServer((socket) => {
      sockets.add(socket);
      socket.on('close', () => sockets.delete(socket));
    });
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
  });

  afterAll(async () => {
    for (const socket of sockets) socket.destroy();
    await new Promise<void>((resolve) => silent.close(() => resolve()));
  });

  it('a closed port fails with a retryable error within the timeout', async () => {
    const probe = createTcpServer();
    await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
    const closedPort = (probe.address() as AddressInfo).port;
    await new Promise<void>((resolve) => probe.close(() => resolve()));

    const notifier = createSmtpNotifier({
      url: `smtp://127.0.0.1:${closedPort}`,
      from: 'no-reply@gatehouse.test',
      timeoutMs: 500,
    });
    const started = Date.now();
    try {
      const err = await notifier.send(message()).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(Error);
      expect(err).not.toBeInstanceOf(UnrecoverableError);
      expect((err as Error).message).toMatch(/ESOCKET|ECONNECTION|ECONNREFUSED/);
    } finally {
      await notifier.close?.();
    }
    expect(Date.now() - started).toBeLessThan(500);
  });

  it('a server that never greets times out', async () => {
    const silentPort = (silent.address() as AddressInfo).port;
    const notifier = createSmtpNotifier({
      url: `smtp://127.0.0.1:${silentPort}`,
      from: 'no-reply@gatehouse.test',
      timeoutMs: 300,
    });
    const started = Date.now();
    try {
      const err = await notifier.send(message()).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(Error);
      expect(err).not.toBeInstanceOf(UnrecoverableError);
      expect((err as Error).message).toContain('ETIMEDOUT');
    } finally {
      await notifier.close?.();
    }
    const elapsed = Date.now() - started;
    expect(elapsed).toBeGreaterThanOrEqual(250);
    expect(elapsed).toBeLessThan(2_000);
  });
});
