import { randomBytes } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import { verifyWebhookSignature, type WebhookPayload } from '../../src/notify/webhook.ts';
import { HCAPTCHA_TEST_SECRET, type SiteverifyServer, startSiteverifyServer } from './siteverify-server.ts';

/**
 * What a signup test needs around Gatehouse: a local hCaptcha siteverify server and a webhook
 * receiver standing in for the product's e-mail/SMS sender, which checks every signature.
 */
export interface SignupWorld {
  siteverify: SiteverifyServer;
  env: Record<string, string>;
  /** A fresh captcha token that passes once. */
  captcha(): string;
  messages: WebhookPayload[];
  waitForMessage(accountId: string, type: WebhookPayload['type'], after?: number): Promise<WebhookPayload>;
  close(): Promise<void>;
}

export async function startSignupWorld(): Promise<SignupWorld> {
  const siteverify = await startSiteverifyServer({ mode: 'hcaptcha' });
  const secret = `whsec-${randomBytes(12).toString('hex')}`;
  const messages: WebhookPayload[] = [];
  const receiver: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const raw = Buffer.concat(chunks).toString('utf8');
      if (!verifyWebhookSignature(secret, req.headers['x-gatehouse-signature'] as string | undefined, raw)) {
        res.writeHead(401).end();
        return;
      }
      messages.push(JSON.parse(raw) as WebhookPayload);
      res.writeHead(204).end();
    });
  });
  await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
  const port = (receiver.address() as { port: number }).port;
  let n = 0;
  return {
    siteverify,
    messages,
    env: {
      CAPTCHA_PROVIDER: 'hcaptcha',
      CAPTCHA_SECRET: HCAPTCHA_TEST_SECRET,
      CAPTCHA_VERIFY_URL: siteverify.url,
      CAPTCHA_TIMEOUT_MS: '2000',
      NOTIFIER: 'webhook',
      NOTIFY_WEBHOOK_URL: `http://127.0.0.1:${port}/hooks/gatehouse`,
      NOTIFY_WEBHOOK_SECRET: secret,
    },
    captcha: () => `pass-${process.pid}-${++n}-${randomBytes(6).toString('hex')}`,
    async waitForMessage(accountId, type, after = 0) {
      const until = Date.now() + 10_000;
      while (Date.now() < until) {
        const found = messages.filter((m) => m.accountId === accountId && m.type === type);
        if (found.length > after) return found[found.length - 1]!;
        await new Promise((r) => setTimeout(r, 25));
      }
      throw new Error(`no ${type} message for ${accountId}`);
    },
    async close() {
      receiver.closeAllConnections();
      await new Promise<void>((resolve) => receiver.close(() => resolve()));
      await siteverify.close();
    },
  };
}
