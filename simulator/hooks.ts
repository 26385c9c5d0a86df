import { randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { verifyWebhookSignature, type WebhookPayload } from '../src/notify/webhook.ts';

// What sits around Gatehouse in a product, played by the simulator on one local listener:
// - POST /siteverify: hCaptcha's siteverify contract. Every `pass-…` token is solved once (a farm
//   with a captcha-solving service gets exactly this); reuse answers already-seen-response.
// - POST /hooks/gatehouse: the product's mail and SMS sender, receiving Gatehouse's signed webhook
//   notifier; it checks every signature and hands tokens and codes to whoever waits for them.
// One listener on a port that can be fixed, so a Gatehouse started by someone else (`--url`) can be
// pointed at it before the run.

export interface Hooks {
  readonly siteverifyUrl: string;
  readonly webhookUrl: string;
  readonly webhookSecret: string;
  /** A captcha token that passes once. */
  captcha(): string;
  readonly inbox: Inbox;
  /** Messages refused for a bad signature (should stay 0). */
  readonly badSignatures: () => number;
  close(): Promise<void>;
}

type Kind = WebhookPayload['type'];

/** Verification messages by account, and the callers waiting for the next one. */
export class Inbox {
  private readonly messages = new Map<string, WebhookPayload[]>();
  private readonly waiters = new Map<string, Array<() => void>>();

  private static key(accountId: string, kind: Kind): string {
    return `${accountId}|${kind}`;
  }

  push(message: WebhookPayload): void {
    const key = Inbox.key(message.accountId, message.type);
    const list = this.messages.get(key) ?? [];
    list.push(message);
    this.messages.set(key, list);
    for (const wake of this.waiters.get(key) ?? []) wake();
    this.waiters.delete(key);
  }

  count(accountId: string, kind: Kind): number {
    return this.messages.get(Inbox.key(accountId, kind))?.length ?? 0;
  }

  /** The first message of its kind after the `after` already seen; null when none comes in time. */
  async next(
    accountId: string,
    kind: Kind,
    after: number,
    timeoutMs = 15_000,
  ): Promise<WebhookPayload | null> {
    const key = Inbox.key(accountId, kind);
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const list = this.messages.get(key);
      if (list && list.length > after) return list[after] ?? null;
      const left = deadline - Date.now();
      if (left <= 0) return null;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        const waiting = this.waiters.get(key) ?? [];
        waiting.push(() => {
          clearTimeout(timer);
          resolve();
        });
        this.waiters.set(key, waiting);
      });
    }
  }
}

export interface HooksOptions {
  port?: number;
  host?: string;
  /** The captcha secret Gatehouse sends; any non-empty one when absent. */
  captchaSecret?: string;
  webhookSecret?: string;
  tokenPrefix?: string;
}

const MAX_BODY = 256 * 1024;

async function readBody(req: IncomingMessage): Promise<string | null> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > MAX_BODY) return null;
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks).toString('utf8');
}

export async function startHooks(opts: HooksOptions = {}): Promise<Hooks> {
  const webhookSecret = opts.webhookSecret ?? `whsec_${randomBytes(18).toString('hex')}`;
  const inbox = new Inbox();
  const used = new Set<string>();
  let bad = 0;
  let issued = 0;
  const prefix = opts.tokenPrefix ?? randomBytes(4).toString('hex');

  const json = (res: ServerResponse, status: number, body: unknown) => {
    res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
  };

  /** hCaptcha's verdict on one form: the token passes once, given any (or the expected) secret. */
  function siteverify(raw: string): Record<string, unknown> {
    const form = new URLSearchParams(raw);
    const secret = form.get('secret');
    const token = form.get('response');
    const fail = (code: string) => ({ success: false, 'error-codes': [code] });
    if (!secret) return fail('missing-input-secret');
    if (opts.captchaSecret !== undefined && secret !== opts.captchaSecret)
      return fail('invalid-input-secret');
    if (!token) return fail('missing-input-response');
    if (!token.startsWith('pass-')) return fail('invalid-input-response');
    if (used.has(token)) return fail('already-seen-response');
    used.add(token);
    return { success: true, challenge_ts: new Date().toISOString(), hostname: 'localhost' };
  }

  function webhook(req: IncomingMessage, raw: string, res: ServerResponse): void {
    const signature = req.headers['x-gatehouse-signature'];
    if (!verifyWebhookSignature(webhookSecret, typeof signature === 'string' ? signature : undefined, raw)) {
      bad++;
      res.writeHead(401).end();
      return;
    }
    inbox.push(JSON.parse(raw) as WebhookPayload);
    res.writeHead(204).end();
  }

  const server: Server = createServer((req, res) => {
    void (async () => {
      const path = new URL(req.url ?? '/', 'http://localhost').pathname;
      if (req.method !== 'POST') return void res.writeHead(405).end();
      const raw = await readBody(req);
      if (raw === null) return void res.writeHead(413).end();
      if (path === '/siteverify') return json(res, 200, siteverify(raw));
      if (path === '/hooks/gatehouse') return webhook(req, raw, res);
      res.writeHead(404).end();
    })().catch(() => {
      if (!res.headersSent) res.writeHead(500).end();
    });
  });
  const host = opts.host ?? '127.0.0.1';
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 0, host, () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  const base = `http://${host}:${port}`;
  return {
    siteverifyUrl: `${base}/siteverify`,
    webhookUrl: `${base}/hooks/gatehouse`,
    webhookSecret,
    captcha: () => `pass-${prefix}-${++issued}-${randomBytes(6).toString('hex')}`,
    inbox,
    badSignatures: () => bad,
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
