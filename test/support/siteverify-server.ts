// A local stand-in for hCaptcha's and Turnstile's siteverify endpoints, for tests and benchmarks.
// It speaks the documented contract (form POST in, `{success, challenge_ts, hostname, error-codes}`
// out) and keeps tokens single-use like the real services, so code under test meets the same
// answers it will meet in production — without the internet.
//
// Default verdicts, by token:
//   HCAPTCHA_TEST_TOKEN or `pass-…`  success once; later uses answer already-seen-response
//                                    (hCaptcha) / timeout-or-duplicate (Turnstile). A Turnstile
//                                    retry with the first use's idempotency_key gets the success again.
//   `pass-score-<n>-…`               as `pass-`, with Enterprise `score: n` (hCaptcha mode)
//   `expired-…`                      expired-input-response (hCaptcha) / timeout-or-duplicate (Turnstile)
//   anything else                    invalid-input-response
// Before the token, the secret (and in hCaptcha mode a sent sitekey) must match the configured
// test keys, else invalid-input-secret / sitekey-secret-mismatch — how a misconfiguration looks.

import { createServer, type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export const HCAPTCHA_TEST_SECRET = '0x0000000000000000000000000000000000000000';
export const HCAPTCHA_TEST_SITEKEY = '10000000-ffff-ffff-ffff-000000000001';
export const HCAPTCHA_TEST_TOKEN = '10000000-aaaa-bbbb-cccc-000000000001';
/** Cloudflare's "always passes" dummy secret. */
export const TURNSTILE_TEST_SECRET = '1x0000000000000000000000000000000AA';

export type SiteverifyMode = 'hcaptcha' | 'turnstile';
export type SiteverifyForm = Readonly<Record<string, string>>;

export type SiteverifyReply =
  | { kind: 'json'; body: unknown; status?: number }
  | { kind: 'raw'; status: number; body: string; contentType?: string }
  | { kind: 'hang' };

/**
 * Decides the reply to one request. `defaultReply()` computes (and records, e.g. burns the token)
 * the default verdict, so a behaviour can wrap it: fail once, then behave.
 */
export type SiteverifyBehaviour = (
  form: SiteverifyForm,
  defaultReply: () => SiteverifyReply,
) => SiteverifyReply;

/** Ready-made behaviours for the failure modes a verifier must survive. */
export const behaviours = {
  hang: (): SiteverifyBehaviour => () => ({ kind: 'hang' }),
  http500: (): SiteverifyBehaviour => () => ({
    kind: 'raw',
    status: 500,
    body: '{"error":"internal"}',
    contentType: 'application/json',
  }),
  nonJson: (): SiteverifyBehaviour => () => ({
    kind: 'raw',
    status: 200,
    body: '<html><body>Gateway says hello</body></html>',
    contentType: 'text/html',
  }),
  errorCodes:
    (...codes: string[]): SiteverifyBehaviour =>
    () => ({ kind: 'json', body: { success: false, 'error-codes': codes } }),
  /** The first `times` requests get `first`; later ones the default verdict. */
  firstThen:
    (times: number, first: SiteverifyBehaviour): SiteverifyBehaviour =>
    (form, defaultReply) => {
      if (times > 0) {
        times--;
        return first(form, defaultReply);
      }
      return defaultReply();
    },
};

export interface SiteverifyServerOptions {
  /** Which provider's codes and fields to answer with. Default 'hcaptcha'. */
  mode?: SiteverifyMode;
  /** The secret that verifies; default the mode's test secret. `null` accepts any non-empty one. */
  secret?: string | null;
  /** hCaptcha: the sitekey that matches the secret; default the test sitekey. `null` accepts any. */
  siteKey?: string | null;
  /** Reported as `hostname` on success. Default 'localhost'. */
  hostname?: string;
  /** Delay before every answer, for benchmarks that need a realistic round trip. */
  latencyMs?: number;
  behaviour?: SiteverifyBehaviour;
}

export interface SiteverifyServer {
  /** The full siteverify URL, e.g. http://127.0.0.1:41234/siteverify */
  readonly url: string;
  readonly mode: SiteverifyMode;
  /** Every form body received, in order. */
  readonly requests: SiteverifyForm[];
  /** The headers of each request, parallel to `requests`. */
  readonly headers: IncomingHttpHeaders[];
  /** Replace the behaviour; `undefined` restores the default verdicts. */
  setBehaviour(behaviour: SiteverifyBehaviour | undefined): void;
  /** Forget recorded requests and burnt tokens, and restore the default behaviour. */
  reset(): void;
  /** Stops listening and drops every connection, hanging ones included. Safe to call twice. */
  close(): Promise<void>;
}

const MAX_BODY_BYTES = 64 * 1024;

export async function startSiteverifyServer(opts: SiteverifyServerOptions = {}): Promise<SiteverifyServer> {
  const mode = opts.mode ?? 'hcaptcha';
  const expectedSecret = opts.secret === undefined ? defaultSecret(mode) : opts.secret;
  const expectedSiteKey = opts.siteKey === undefined ? HCAPTCHA_TEST_SITEKEY : opts.siteKey;
  const hostname = opts.hostname ?? 'localhost';
  const latencyMs = opts.latencyMs ?? 0;

  const requests: SiteverifyForm[] = [];
  const headers: IncomingHttpHeaders[] = [];
  // token -> the idempotency key of its first use and the answer it got, for Turnstile replays.
  const used = new Map<string, { idempotencyKey: string | undefined; reply: SiteverifyReply }>();
  const timers = new Set<NodeJS.Timeout>();
  let behaviour = opts.behaviour;
  let closed = false;

  const fail = (...codes: string[]): SiteverifyReply => ({
    kind: 'json',
    body: { success: false, 'error-codes': codes },
  });

  function defaultReply(form: SiteverifyForm): SiteverifyReply {
    const { secret, response: token } = form;
    if (!secret) return fail('missing-input-secret');
    if (expectedSecret !== null && secret !== expectedSecret) return fail('invalid-input-secret');
    if (
      mode === 'hcaptcha' &&
      form.sitekey !== undefined &&
      expectedSiteKey !== null &&
      form.sitekey !== expectedSiteKey
    ) {
      return fail('sitekey-secret-mismatch');
    }
    if (!token) return fail('missing-input-response');
    if (token.startsWith('expired-'))
      return fail(mode === 'hcaptcha' ? 'expired-input-response' : 'timeout-or-duplicate');
    if (token !== HCAPTCHA_TEST_TOKEN && !token.startsWith('pass-')) return fail('invalid-input-response');

    const idempotencyKey = mode === 'turnstile' ? form.idempotency_key : undefined;
    const prior = used.get(token);
    if (prior !== undefined) {
      if (idempotencyKey !== undefined && prior.idempotencyKey === idempotencyKey) return prior.reply;
      return fail(mode === 'hcaptcha' ? 'already-seen-response' : 'timeout-or-duplicate');
    }
    const reply = success(token);
    used.set(token, { idempotencyKey, reply });
    return reply;
  }

  function success(token: string): SiteverifyReply {
    const body: Record<string, unknown> = {
      success: true,
      challenge_ts: new Date().toISOString(),
      hostname,
    };
    if (mode === 'turnstile') {
      body['error-codes'] = [];
      body.action = '';
      body.cdata = '';
    } else {
      const score = /^pass-score-(\d+(?:\.\d+)?)/.exec(token)?.[1];
      if (score !== undefined) {
        body.score = Number(score);
        body.score_reason = [];
      }
    }
    return { kind: 'json', body };
  }

  function send(res: ServerResponse, reply: SiteverifyReply): void {
    if (reply.kind === 'hang') return;
    const write = () => {
      if (res.destroyed) return;
      if (reply.kind === 'json') {
        res.writeHead(reply.status ?? 200, { 'content-type': 'application/json' });
        res.end(JSON.stringify(reply.body));
      } else {
        res.writeHead(reply.status, { 'content-type': reply.contentType ?? 'text/plain' });
        res.end(reply.body);
      }
    };
    if (latencyMs <= 0) {
      write();
      return;
    }
    const timer = setTimeout(() => {
      timers.delete(timer);
      write();
    }, latencyMs);
    timers.add(timer);
  }

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = new URL(req.url ?? '/', 'http://127.0.0.1').pathname;
    if (!path.endsWith('/siteverify')) return send(res, { kind: 'raw', status: 404, body: 'not found' });
    if (req.method !== 'POST') return send(res, { kind: 'raw', status: 405, body: 'method not allowed' });

    const raw = await readBody(req);
    if (raw === undefined) return send(res, { kind: 'raw', status: 413, body: 'too large' });
    const form = parseForm(mode, req.headers['content-type'], raw);
    requests.push(form ?? {});
    headers.push(req.headers);
    if (form === undefined) return send(res, fail('bad-request'));

    const fallback = () => defaultReply(form);
    send(res, behaviour ? behaviour(form, fallback) : fallback());
  }

  const server = createServer((req, res) => {
    handle(req, res).catch(() => {
      if (!res.headersSent) res.writeHead(500).end();
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const { port } = server.address() as AddressInfo;

  return {
    url: `http://127.0.0.1:${port}/siteverify`,
    mode,
    requests,
    headers,
    setBehaviour(next) {
      behaviour = next;
    },
    reset() {
      requests.length = 0;
      headers.length = 0;
      used.clear();
      behaviour = opts.behaviour;
    },
    async close() {
      if (closed) return;
      closed = true;
      for (const timer of timers) clearTimeout(timer);
      timers.clear();
      await new Promise<void>((resolve, reject) => {
        server.close((err) => (err ? reject(err) : resolve()));
        // Hanging requests and idle keep-alive sockets would otherwise hold close() open forever.
        server.closeAllConnections();
      });
    },
  };
}

function defaultSecret(mode: SiteverifyMode): string {
  return mode === 'hcaptcha' ? HCAPTCHA_TEST_SECRET : TURNSTILE_TEST_SECRET;
}

async function readBody(req: IncomingMessage): Promise<string | undefined> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    const buf = chunk as Buffer;
    size += buf.length;
    if (size > MAX_BODY_BYTES) return undefined;
    chunks.push(buf);
  }
  return Buffer.concat(chunks).toString('utf8');
}

// hCaptcha reads only form bodies, so anything else arrives there as an empty form (and fails on
// the missing secret, as the real one does); Turnstile also accepts JSON.
function parseForm(
  mode: SiteverifyMode,
  contentType: string | undefined,
  raw: string,
): SiteverifyForm | undefined {
  const type = contentType?.split(';')[0]?.trim().toLowerCase();
  if (type === 'application/x-www-form-urlencoded') return Object.fromEntries(new URLSearchParams(raw));
  if (mode === 'hcaptcha') return {};
  if (type === 'application/json') {
    try {
      const parsed: unknown = JSON.parse(raw);
      if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) return undefined;
      const form: Record<string, string> = {};
      for (const [key, value] of Object.entries(parsed)) if (typeof value === 'string') form[key] = value;
      return form;
    } catch {
      return undefined;
    }
  }
  return undefined;
}
