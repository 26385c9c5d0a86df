import { createHmac, randomUUID, timingSafeEqual } from 'node:crypto';
import { UnrecoverableError } from 'bullmq';
import { redactUrl } from '../config.ts';
import type { Logger } from '../logger.ts';
import type { NotificationMessage } from '../queues/definitions.ts';
import { maskRecipient, type Notifier } from './notifier.ts';

// The operator's endpoint receives every verification message as a signed JSON POST and hands it
// to its own mail or SMS provider. This is also how SMS codes leave Gatehouse: the SMTP notifier
// cannot reach a phone.

export const SIGNATURE_HEADER = 'X-Gatehouse-Signature';
export const EVENT_HEADER = 'X-Gatehouse-Event';
export const DELIVERY_HEADER = 'X-Gatehouse-Delivery';

export type WebhookPayload =
  | { type: 'verify_email'; to: string; token: string; accountId: string; expiresAt: string }
  | { type: 'verify_phone'; to: string; code: string; accountId: string; expiresAt: string };

export interface WebhookNotifierOptions {
  url: string;
  secret: string;
  timeoutMs: number;
  logger?: Logger;
}

export function toWebhookPayload(msg: NotificationMessage): WebhookPayload {
  const { type, to, accountId, expiresAt, secret } = msg;
  switch (type) {
    case 'verify_email':
      return { type, to, token: secret, accountId, expiresAt };
    case 'verify_phone':
      return { type, to, code: secret, accountId, expiresAt };
    default:
      throw new UnrecoverableError(`unknown notification type ${JSON.stringify(type)}`);
  }
}

const hmacHex = (secret: string, timestamp: string, rawBody: string | Uint8Array): string =>
  createHmac('sha256', secret).update(`${timestamp}.`).update(rawBody).digest('hex');

/** The X-Gatehouse-Signature value for a body sent at `timestamp` (unix seconds). */
export function signWebhookBody(secret: string, rawBody: string | Uint8Array, timestamp: number): string {
  const t = String(Math.floor(timestamp));
  return `t=${t},v1=${hmacHex(secret, t, rawBody)}`;
}

/**
 * Checks an X-Gatehouse-Signature header against the exact bytes received (before any JSON
 * parsing, which would change them). Several v1 entries are accepted so a sender can sign with an
 * old and a new secret while the secret is rotated. The tolerance bounds how long a captured
 * request can be replayed; `now` is in milliseconds, as Date.now().
 */
export function verifyWebhookSignature(
  secret: string,
  header: string | null | undefined,
  rawBody: string | Uint8Array,
  toleranceSeconds = 300,
  now: number = Date.now(),
): boolean {
  if (!header || !secret) return false;
  let timestamp: string | undefined;
  const candidates: string[] = [];
  for (const part of header.split(',')) {
    const eq = part.indexOf('=');
    if (eq < 0) continue;
    const key = part.slice(0, eq).trim();
    const value = part.slice(eq + 1).trim();
    if (key === 't') timestamp = value;
    else if (key === 'v1') candidates.push(value);
  }
  if (timestamp === undefined || !/^\d{1,12}$/.test(timestamp) || candidates.length === 0) return false;
  if (Math.abs(now / 1000 - Number(timestamp)) > toleranceSeconds) return false;
  const expected = Buffer.from(hmacHex(secret, timestamp, rawBody), 'utf8');
  let valid = false;
  for (const candidate of candidates) {
    const given = Buffer.from(candidate.toLowerCase(), 'utf8');
    // Every candidate is compared, so the time taken does not reveal which one matched.
    if (given.length === expected.length && timingSafeEqual(given, expected)) valid = true;
  }
  return valid;
}

export function createWebhookNotifier(opts: WebhookNotifierOptions): Notifier {
  // Error messages end up in logs and in BullMQ's failedReason: never the query string (which may
  // carry a provider key) nor anything from the payload.
  const where = redactUrl(opts.url);
  // fetch() refuses URLs with credentials; an operator writing https://user:pass@host means Basic.
  const target = new URL(opts.url);
  const authorization =
    target.username || target.password
      ? `Basic ${Buffer.from(`${decodeURIComponent(target.username)}:${decodeURIComponent(target.password)}`).toString('base64')}`
      : undefined;
  target.username = '';
  target.password = '';
  const endpoint = target.href;
  return {
    kind: 'webhook',
    async send(msg, sendOpts) {
      const payload = toWebhookPayload(msg);
      const body = JSON.stringify(payload);
      const deliveryId = sendOpts?.deliveryId ?? randomUUID();
      const started = Date.now();
      let res: Response;
      try {
        res = await fetch(endpoint, {
          method: 'POST',
          headers: {
            ...(authorization ? { authorization } : {}),
            'content-type': 'application/json',
            'user-agent': 'Gatehouse-Notify/1',
            [SIGNATURE_HEADER]: signWebhookBody(opts.secret, body, started / 1000),
            [EVENT_HEADER]: payload.type,
            [DELIVERY_HEADER]: deliveryId,
          },
          body,
          // A redirected POST would be replayed as a GET or to another host: treat it as a failure.
          redirect: 'manual',
          signal: AbortSignal.timeout(opts.timeoutMs),
        });
      } catch (err) {
        const reason = describeFetchFailure(err, opts.timeoutMs).replaceAll(endpoint, where);
        throw new Error(`notify webhook ${where} ${reason}`);
      }
      // The answer's body is not used; cancelling it frees the connection for the next delivery.
      await res.body?.cancel().catch(() => undefined);
      if (res.status >= 200 && res.status < 300) {
        opts.logger?.debug(
          {
            type: payload.type,
            to: maskRecipient(payload.to),
            accountId: payload.accountId,
            deliveryId,
            status: res.status,
            ms: Date.now() - started,
          },
          'verification message handed to webhook',
        );
        return;
      }
      const message = `notify webhook ${where} answered HTTP ${res.status}`;
      // 408 and 429 say "not now"; any other 4xx says the request itself is refused, every time.
      if (res.status >= 400 && res.status < 500 && res.status !== 408 && res.status !== 429) {
        throw new UnrecoverableError(message);
      }
      throw new Error(message);
    },
  };
}

function describeFetchFailure(err: unknown, timeoutMs: number): string {
  if (err instanceof Error && (err.name === 'TimeoutError' || err.name === 'AbortError')) {
    return `did not answer within ${timeoutMs} ms`;
  }
  const cause =
    err instanceof Error ? (err.cause as { code?: unknown; message?: unknown } | undefined) : undefined;
  const reason =
    typeof cause?.code === 'string'
      ? cause.code
      : typeof cause?.message === 'string'
        ? cause.message
        : err instanceof Error
          ? err.message
          : String(err);
  return `unreachable (${reason})`;
}
