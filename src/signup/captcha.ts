// Server-side captcha verification against the providers' documented siteverify contracts
// (hCaptcha: docs.hcaptcha.com "Verify the User Response Server Side"; Turnstile:
// developers.cloudflare.com/turnstile/get-started/server-side-validation). No SDK: neither provider
// ships a Node verifier that lets us choose the URL and a timeout.
//
// Every answer is one of three outcomes, and the split matters to the caller:
//   ok                   the provider vouched for the token (and our own hostname/score checks held);
//   captcha_failed       the client's token is bad — reject the signup, ask for a new challenge;
//   captcha_unavailable  we could not get a verdict — provider down, slow, or OUR configuration is
//                        wrong. Not the user's fault, but not a pass either: callers must not treat
//                        it as ok (a farm would simply wait for an outage).
// Codes are classified in ERROR_CODE_TABLE below. Anything unknown, and any mix that contains a
// client-side code, is captcha_failed: an unrecognised answer must never open the door.

import { randomUUID } from 'node:crypto';
import { isIP } from 'node:net';

export type CaptchaProvider = 'hcaptcha' | 'turnstile' | 'none';
type RealProvider = Exclude<CaptchaProvider, 'none'>;

export type CaptchaResult =
  | { ok: true; hostname?: string; challengeTs?: string; score?: number }
  | { ok: false; reason: 'captcha_failed'; codes: string[] }
  | { ok: false; reason: 'captcha_unavailable'; detail: string };

export interface CaptchaVerifierOptions {
  provider: CaptchaProvider;
  secret: string;
  /** hCaptcha only: sent as `sitekey` so a token minted for another site is refused. */
  siteKey?: string;
  /** Defaults to the provider's official siteverify URL. */
  verifyUrl?: string;
  /** Budget for the whole verification, retries included. Default 3000. */
  timeoutMs?: number;
  /** Compared case-insensitively with the `hostname` the provider reports. */
  expectedHostname?: string;
  /** hCaptcha Enterprise risk score bounds (higher = riskier); outside them is captcha_failed. */
  minScore?: number;
  maxScore?: number;
}

export interface CaptchaVerifier {
  readonly provider: CaptchaProvider;
  verify(token: string, remoteIp?: string): Promise<CaptchaResult>;
}

export const SITEVERIFY_URLS: Readonly<Record<RealProvider, string>> = {
  hcaptcha: 'https://api.hcaptcha.com/siteverify',
  turnstile: 'https://challenges.cloudflare.com/turnstile/v0/siteverify',
};

/**
 * Longest token sent to the provider. Turnstile documents 2048 characters; hCaptcha documents no
 * maximum and its tokens are longer JWT-like strings, so it gets a generous cap that still stops
 * a client from making us forward megabytes.
 */
export const MAX_TOKEN_LENGTH: Readonly<Record<RealProvider, number>> = {
  hcaptcha: 8192,
  turnstile: 2048,
};

export const DEFAULT_TIMEOUT_MS = 3000;

export type CodeOutcome = 'captcha_failed' | 'captcha_unavailable';

export interface ErrorCodeEntry {
  readonly outcome: CodeOutcome;
  readonly meaning: string;
}

/**
 * Every error code the providers document, and where it lands. `captcha_unavailable` is reserved
 * for codes the client cannot provoke through the token: we send the secret and sitekey from our
 * configuration, build the request ourselves, screen tokens to printable ASCII and forward only
 * addresses `net.isIP` accepts — so those codes mean our setup or the provider is at fault.
 */
export const ERROR_CODE_TABLE: Readonly<Record<RealProvider, Readonly<Record<string, ErrorCodeEntry>>>> = {
  hcaptcha: {
    'missing-input-secret': { outcome: 'captcha_unavailable', meaning: 'secret key is missing' },
    'invalid-input-secret': { outcome: 'captcha_unavailable', meaning: 'secret key is invalid or malformed' },
    'missing-input-response': { outcome: 'captcha_failed', meaning: 'token is missing' },
    'invalid-input-response': { outcome: 'captcha_failed', meaning: 'token is invalid or malformed' },
    'expired-input-response': { outcome: 'captcha_failed', meaning: 'token expired (120 s by default)' },
    'already-seen-response': { outcome: 'captcha_failed', meaning: 'token was already verified once' },
    'invalid-or-already-seen-response': {
      outcome: 'captcha_failed',
      meaning: 'legacy name: token invalid or already verified',
    },
    'bad-request': { outcome: 'captcha_unavailable', meaning: 'request is invalid or malformed' },
    'missing-remoteip': {
      outcome: 'captcha_unavailable',
      meaning: 'remoteip is required by the account and was not sent',
    },
    'invalid-remoteip': {
      outcome: 'captcha_unavailable',
      meaning: 'remoteip is not a valid IP address or blinded value',
    },
    'not-using-dummy-passcode': {
      outcome: 'captcha_unavailable',
      meaning: 'a test sitekey was used without its matching test secret',
    },
    // Not in the main table of hCaptcha's docs, but answered for the same test-key mix-up.
    'not-using-dummy-secret': {
      outcome: 'captcha_unavailable',
      meaning: 'a test sitekey was used without the test secret',
    },
    'sitekey-secret-mismatch': {
      outcome: 'captcha_unavailable',
      meaning: 'the sitekey is not registered with the provided secret',
    },
  },
  turnstile: {
    'missing-input-secret': { outcome: 'captcha_unavailable', meaning: 'secret parameter was not passed' },
    'invalid-input-secret': {
      outcome: 'captcha_unavailable',
      meaning: 'secret parameter was invalid or did not exist',
    },
    'missing-input-response': { outcome: 'captcha_failed', meaning: 'token was not passed' },
    'invalid-input-response': { outcome: 'captcha_failed', meaning: 'token is invalid or has expired' },
    'bad-request': { outcome: 'captcha_unavailable', meaning: 'request was rejected as malformed' },
    'timeout-or-duplicate': {
      outcome: 'captcha_failed',
      meaning: 'token older than five minutes or already redeemed',
    },
    'internal-error': { outcome: 'captcha_unavailable', meaning: 'provider-side error; can be retried' },
  },
};

/** Codes this module adds itself; all are captcha_failed. */
export const LOCAL_FAILURE_CODES = {
  missingToken: 'missing-input-response',
  oversizedToken: 'oversized-input-response',
  malformedToken: 'malformed-input-response',
  hostnameMismatch: 'hostname-mismatch',
  scoreAboveMax: 'score-above-max',
  scoreBelowMin: 'score-below-min',
  unspecified: 'unspecified-failure',
} as const;

/** Decides the outcome of a list of provider error codes (see the module header for the rule). */
export function classifyErrorCodes(provider: RealProvider, codes: readonly string[]): CodeOutcome {
  if (codes.length === 0) return 'captcha_failed';
  const table = ERROR_CODE_TABLE[provider];
  const allOurs = codes.every((code) => table[code]?.outcome === 'captcha_unavailable');
  return allOurs ? 'captcha_unavailable' : 'captcha_failed';
}

// Real tokens are base64url/JWT-like ASCII; anything else cannot be genuine, and refusing it
// locally keeps client bytes from ever shaping a `bad-request` (which we classify as ours).
const PRINTABLE_ASCII = /^[\x21-\x7e]+$/;

// The answer body is tiny; anything bigger is not a siteverify answer.
const MAX_ANSWER_CHARS = 64 * 1024;

interface SiteverifyAnswer {
  success: boolean;
  codes: string[];
  hostname?: string;
  challengeTs?: string;
  score?: number;
}

type Attempt =
  | { kind: 'answer'; answer: SiteverifyAnswer }
  | { kind: 'unavailable'; detail: string; retryable: boolean };

export function createCaptchaVerifier(opts: CaptchaVerifierOptions): CaptchaVerifier {
  const { provider } = opts;
  if (provider === 'none') {
    return { provider, verify: async () => ({ ok: true }) };
  }
  const real: RealProvider = provider;
  const config = validateOptions(real, opts);

  async function verify(token: string, remoteIp?: string): Promise<CaptchaResult> {
    const screened = screenToken(real, token);
    if (screened !== undefined) return failed([screened]);

    const form = new URLSearchParams({ secret: opts.secret, response: token });
    // An address we cannot vouch for is dropped rather than forwarded, so a spoofed header can
    // never turn into `invalid-remoteip` (an unavailable outcome).
    if (remoteIp !== undefined && isIP(remoteIp) !== 0) form.set('remoteip', remoteIp);
    if (real === 'hcaptcha' && opts.siteKey) form.set('sitekey', opts.siteKey);
    // Turnstile burns a token on first sight; the same key on a retry gets the first verdict back
    // instead of `timeout-or-duplicate`. hCaptcha has no such key, so it is never retried.
    if (real === 'turnstile') form.set('idempotency_key', randomUUID());
    const attempts = real === 'turnstile' ? 2 : 1;

    const signal = AbortSignal.timeout(config.timeoutMs);
    let attempt: Attempt = { kind: 'unavailable', detail: 'not attempted', retryable: false };
    for (let i = 0; i < attempts; i++) {
      attempt = await postOnce(config.url, form, signal, config.timeoutMs, real);
      if (attempt.kind === 'answer' || !attempt.retryable || signal.aborted) break;
    }
    if (attempt.kind === 'unavailable') return unavailable(attempt.detail);
    return judge(real, attempt.answer, opts);
  }

  return { provider, verify };
}

function validateOptions(
  provider: RealProvider,
  opts: CaptchaVerifierOptions,
): { url: string; timeoutMs: number } {
  // Misconfiguration found at start-up beats every signup answering captcha_unavailable.
  if (!opts.secret) throw new TypeError(`captcha provider ${provider} needs a secret`);
  const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  if (!Number.isFinite(timeoutMs) || timeoutMs <= 0) {
    throw new TypeError('captcha timeoutMs must be a positive number');
  }
  const url = new URL(opts.verifyUrl ?? SITEVERIFY_URLS[provider]).toString();
  for (const [name, value] of [
    ['minScore', opts.minScore],
    ['maxScore', opts.maxScore],
  ] as const) {
    if (value === undefined) continue;
    if (provider !== 'hcaptcha') throw new TypeError(`captcha ${name} applies to hCaptcha Enterprise only`);
    if (!Number.isFinite(value)) throw new TypeError(`captcha ${name} must be a finite number`);
  }
  if (opts.minScore !== undefined && opts.maxScore !== undefined && opts.minScore > opts.maxScore) {
    throw new TypeError('captcha minScore must not exceed maxScore');
  }
  return { url, timeoutMs };
}

function screenToken(provider: RealProvider, token: string): string | undefined {
  if (typeof token !== 'string' || token.length === 0) return LOCAL_FAILURE_CODES.missingToken;
  if (token.length > MAX_TOKEN_LENGTH[provider]) return LOCAL_FAILURE_CODES.oversizedToken;
  if (!PRINTABLE_ASCII.test(token)) return LOCAL_FAILURE_CODES.malformedToken;
  return undefined;
}

async function postOnce(
  url: string,
  form: URLSearchParams,
  signal: AbortSignal,
  timeoutMs: number,
  provider: RealProvider,
): Promise<Attempt> {
  let status: number;
  let text: string;
  try {
    const res = await fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' },
      body: form.toString(),
      signal,
      // A redirect would re-send the secret to wherever it points; siteverify never redirects.
      redirect: 'manual',
    });
    status = res.status;
    text = await res.text();
  } catch (err) {
    if (signal.aborted) {
      return { kind: 'unavailable', detail: `no answer within ${timeoutMs} ms`, retryable: false };
    }
    // The request may or may not have reached the provider; only an idempotent retry is safe.
    return { kind: 'unavailable', detail: `network error: ${errorCode(err)}`, retryable: true };
  }

  if (status >= 500)
    return { kind: 'unavailable', detail: `siteverify answered HTTP ${status}`, retryable: true };
  if (status === 429)
    return { kind: 'unavailable', detail: 'siteverify rate-limited us (HTTP 429)', retryable: false };
  if (status < 200 || (status >= 300 && status < 400)) {
    return { kind: 'unavailable', detail: `siteverify answered unexpected HTTP ${status}`, retryable: false };
  }
  // 4xx is read too: providers may put a proper `error-codes` answer behind a 400.
  const answer = text.length <= MAX_ANSWER_CHARS ? parseAnswer(text) : undefined;
  if (answer === undefined) {
    return {
      kind: 'unavailable',
      detail: `siteverify answered HTTP ${status} without a siteverify JSON body`,
      retryable: false,
    };
  }
  if (
    provider === 'turnstile' &&
    !answer.success &&
    answer.codes.length > 0 &&
    answer.codes.every((c) => c === 'internal-error')
  ) {
    return { kind: 'unavailable', detail: 'siteverify reported internal-error', retryable: true };
  }
  return { kind: 'answer', answer };
}

function parseAnswer(text: string): SiteverifyAnswer | undefined {
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (typeof body !== 'object' || body === null || Array.isArray(body)) return undefined;
  const record = body as Record<string, unknown>;
  if (typeof record.success !== 'boolean') return undefined;
  const rawCodes = record['error-codes'];
  const answer: SiteverifyAnswer = {
    success: record.success,
    codes: Array.isArray(rawCodes) ? rawCodes.filter((c): c is string => typeof c === 'string') : [],
  };
  if (typeof record.hostname === 'string') answer.hostname = record.hostname;
  if (typeof record.challenge_ts === 'string') answer.challengeTs = record.challenge_ts;
  if (typeof record.score === 'number' && Number.isFinite(record.score)) answer.score = record.score;
  return answer;
}

function judge(
  provider: RealProvider,
  answer: SiteverifyAnswer,
  opts: CaptchaVerifierOptions,
): CaptchaResult {
  // `success: true` alongside error codes has been seen from siteverify-style APIs after a
  // provider bug; a contradictory answer is not a pass.
  if (!answer.success || answer.codes.length > 0) {
    const codes = answer.codes.length > 0 ? answer.codes : [LOCAL_FAILURE_CODES.unspecified];
    if (classifyErrorCodes(provider, codes) === 'captcha_unavailable') {
      return unavailable(`siteverify rejected our request: ${codes.join(', ')}`);
    }
    return failed(codes);
  }

  // A token solved on someone else's page (a solving farm's own site) still verifies as valid.
  if (
    opts.expectedHostname !== undefined &&
    answer.hostname?.toLowerCase() !== opts.expectedHostname.toLowerCase()
  ) {
    return failed([LOCAL_FAILURE_CODES.hostnameMismatch]);
  }

  if (opts.minScore !== undefined || opts.maxScore !== undefined) {
    if (answer.score === undefined) {
      return unavailable(
        'a score threshold is configured but siteverify returned no score (Enterprise only)',
      );
    }
    if (opts.maxScore !== undefined && answer.score > opts.maxScore)
      return failed([LOCAL_FAILURE_CODES.scoreAboveMax]);
    if (opts.minScore !== undefined && answer.score < opts.minScore)
      return failed([LOCAL_FAILURE_CODES.scoreBelowMin]);
  }

  const result: Extract<CaptchaResult, { ok: true }> = { ok: true };
  if (answer.hostname !== undefined) result.hostname = answer.hostname;
  if (answer.challengeTs !== undefined) result.challengeTs = answer.challengeTs;
  if (answer.score !== undefined) result.score = answer.score;
  return result;
}

// Only the error's code travels into `detail`: messages can echo the URL, and callers may log it.
function errorCode(err: unknown): string {
  const cause = err instanceof Error ? err.cause : undefined;
  if (typeof cause === 'object' && cause !== null && 'code' in cause && typeof cause.code === 'string') {
    return cause.code;
  }
  return err instanceof Error ? err.name : 'unknown';
}

function failed(codes: string[]): CaptchaResult {
  return { ok: false, reason: 'captcha_failed', codes };
}

function unavailable(detail: string): CaptchaResult {
  return { ok: false, reason: 'captcha_unavailable', detail };
}
