import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { HttpMetrics } from '../http/metrics.ts';
import { ProblemError } from '../http/problem.ts';
import { type Answer, INTERNAL_ERROR, sendableHeaderValue } from '../http/wire.ts';
import { Fifo } from '../lib/fifo.ts';
import type { Logger } from '../logger.ts';
import { type Cidr, cidrContains, parseIp } from '../signals/ip.ts';
import { hasScope } from '../tokens/scopes.ts';
import type { TokenService } from '../tokens/service.ts';
import { answerJson } from './answer.ts';
import { enforceBody, readEnforceBody } from './input.ts';
import type { EnforceInput, EnforceOutcome, EnforceService } from './service.ts';

// The enforcement routes, in front of Express: answered from the socket by src/http/wire.ts on
// connections that send them the plain way (a gateway's), and by nodeHandler below on node:http
// for any other connection.
//
// Why not Express: a gateway asks on every API call, so this is the one route whose cost
// multiplies. Measured with `npm run bench:enforce` on a 2-core machine, an Express 5 route doing
// one rate-limiter-flexible consume() costs 230–380 µs of server CPU per request, bare node:http
// parsing the same JSON body 47–79 µs: Express's routing, request and response wrappers and
// middleware are most of the difference, and they would come on top of the decision's own work
// (gateway token, key lookup, validation, ASN, rules, ten windows, the usage event, the RateLimit
// fields). Why not node:http alone for a gateway's connections: in one run, a decision cost 196 µs
// of server CPU on node:http and 152 µs read from the socket (src/http/wire.ts has what it reads
// and what it leaves to node:http). Serving these paths here gives up nothing the rest of
// the API needs: both transports share the token check, the problem+json format, request ids,
// metrics and logging with the Express routes, and every other path goes to Express unchanged.
// The decision's Redis call goes through a small pipelined client of its own for the same reason
// (src/redis/resp-client.ts).

export const ENFORCE_PATH = '/v1/enforce';
export const FORWARD_AUTH_PATH = '/v1/enforce/forward-auth';
export const MAX_BODY = 256 * 1024;

export interface EnforceHttpDeps {
  enforce: EnforceService;
  tokens: TokenService;
  metrics: HttpMetrics | null;
  logger: Logger;
  /** Proxies whose X-Forwarded-For hops are believed (the gateway itself, a load balancer). */
  trustedProxies: readonly Cidr[];
  /** An answer is always given within this budget: a gateway must never hang on Gatehouse. */
  deadlineMs: number;
  failMode: () => 'open' | 'closed';
}

/** A request for the enforcement routes, as either transport gives it. */
export interface EnforceRequest {
  method: string;
  url: string;
  /** Lower-case names. */
  headers: Readonly<Record<string, string | string[] | undefined>>;
  remoteAddress: string | undefined;
  /** The body as read already, or how to read it. */
  body: string | (() => Promise<string>);
  /** Lets go of a body the route does not read. */
  discardBody?: () => void;
}

export interface EnforceRoutes {
  /** Whether a request with this method and target is for the enforcement routes. */
  accepts(method: string, url: string): boolean;
  /** The answer (never a rejection), or null for a request that is not for these routes. */
  answer(request: EnforceRequest): Promise<Answer> | null;
}

/** Returns false for requests that are not for the enforcement routes (Express takes them). */
export type FastHandler = (req: IncomingMessage, res: ServerResponse) => boolean;

/** The handler's own view: the dependencies plus the shared deadline. */
interface Handler extends EnforceHttpDeps {
  within(decision: Promise<EnforceOutcome>): Promise<EnforceOutcome>;
}

const pathOf = (url: string) => {
  const q = url.indexOf('?');
  return q === -1 ? url : url.slice(0, q);
};
const isForwardAuth = (path: string) =>
  path === FORWARD_AUTH_PATH || path.startsWith(`${FORWARD_AUTH_PATH}/`);

export function createEnforceRoutes(dependencies: EnforceHttpDeps): EnforceRoutes {
  const deps: Handler = { ...dependencies, within: createDeadlines(dependencies) };
  return {
    accepts: (method, url) => (method === 'POST' && url === ENFORCE_PATH) || isForwardAuth(pathOf(url)),
    answer(req) {
      const url = req.url;
      const path = pathOf(url);
      if (path === ENFORCE_PATH && req.method === 'POST') {
        return serve(deps, req, ENFORCE_PATH, (requestId) => jsonDecision(deps, req, requestId));
      }
      if (isForwardAuth(path)) {
        // nginx and Traefik send GET to the exact path; Envoy's ext_authz sends the client's method
        // with the client's path appended (…/forward-auth/v1/chat), so any method is answered and
        // the suffix is the endpoint when no X-Forwarded-Uri names it.
        const exact = path === FORWARD_AUTH_PATH;
        const q = url.indexOf('?');
        const nginx = exact && q !== -1 && new URLSearchParams(url.slice(q + 1)).get('mode') === 'nginx';
        const suffix = exact ? undefined : url.slice(FORWARD_AUTH_PATH.length);
        req.discardBody?.();
        return serve(deps, req, FORWARD_AUTH_PATH, (requestId) =>
          forwardAuth(deps, req, requestId, nginx, suffix),
        );
      }
      return null;
    },
  };
}

/** The enforcement routes on node:http, for connections the wire path handed over. */
export function nodeHandler(routes: EnforceRoutes): FastHandler {
  return (req, res) => {
    const answer = routes.answer({
      method: req.method ?? 'GET',
      url: req.url ?? '',
      headers: req.headers,
      remoteAddress: req.socket.remoteAddress,
      body: () => readBody(req),
      discardBody: () => req.resume(),
    });
    if (answer === null) return false;
    void answer.then((a) => {
      a.headers['Content-Length'] = Buffer.byteLength(a.body);
      try {
        res.writeHead(a.status, a.headers);
      } catch {
        // serve() has checked the values; this is the last guard, as on the wire path.
        res.writeHead(INTERNAL_ERROR.status, { ...INTERNAL_ERROR.headers, Connection: 'close' });
        res.end(INTERNAL_ERROR.body);
        return;
      }
      res.end(a.body);
    });
    return true;
  };
}

async function serve(
  deps: Handler,
  req: EnforceRequest,
  route: string,
  run: (requestId: string) => Promise<Answer>,
): Promise<Answer> {
  const started = process.hrtime.bigint();
  const incoming = req.headers['x-request-id'];
  const requestId =
    typeof incoming === 'string' && /^[A-Za-z0-9._:-]{1,128}$/.test(incoming) ? incoming : randomUUID();
  let answer: Answer;
  try {
    answer = await run(requestId);
    sendable(answer.headers);
  } catch (err) {
    const problem =
      err instanceof ProblemError
        ? err
        : new ProblemError('internal_error', { detail: 'An unexpected error occurred; it has been logged' });
    if (!(err instanceof ProblemError)) deps.logger.error({ reqId: requestId, err }, 'enforcement error');
    answer = problemAnswer(problem, requestId);
  }
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  deps.metrics?.observe(req.method, route, answer.status, seconds);
  // Debug level: at gateway volume an info line per call would cost more than the decision.
  if (deps.logger.isLevelEnabled('debug'))
    deps.logger.debug(
      { reqId: requestId, route, status: answer.status, ms: Math.round(seconds * 1e4) / 10 },
      'request',
    );
  return answer;
}

/**
 * Throws on a header value neither transport could send (a control character, say): here, so that
 * the answer is a logged internal_error with its request id. Each transport refuses one too.
 */
function sendable(headers: Record<string, string | number>): void {
  for (const name in headers) {
    const value = headers[name];
    if (typeof value === 'string' && !sendableHeaderValue(value))
      throw new Error(`the answer's ${name} header holds a character that cannot be sent`);
  }
}

// Every answer's headers, X-Request-Id included, are made in one object and nothing is set
// before it: node:http's writeHead then writes that object as it is. One earlier setHeader sends
// writeHead down its merging path, which lower-cases and re-validates every header of every answer.

function problemAnswer(problem: ProblemError, requestId: string): Answer {
  return {
    status: problem.status,
    headers: {
      ...problem.headers,
      'X-Request-Id': requestId,
      'Content-Type': 'application/problem+json; charset=utf-8',
    },
    body: JSON.stringify(problem.body(requestId)),
  };
}

/**
 * The decision as the answer's body (src/enforce/answer.ts); `headers` is the outcome's own object
 * (made per decision): it is completed in place.
 */
function decisionAnswer(
  status: number,
  outcome: EnforceOutcome,
  headers: Record<string, string | number>,
  requestId: string,
): Answer {
  headers['X-Request-Id'] = requestId;
  headers['Content-Type'] = 'application/json; charset=utf-8';
  return { status, headers, body: answerJson(outcome) };
}

async function authenticateGateway(deps: Handler, bearer: string | undefined, header: string): Promise<void> {
  if (!bearer) {
    throw new ProblemError('unauthenticated', {
      detail: `Send the gateway's service token in ${header}`,
      headers: { 'WWW-Authenticate': 'Bearer realm="gatehouse"' },
    });
  }
  const principal = await deps.tokens.authenticate(bearer);
  if (!principal) {
    throw new ProblemError('unauthenticated', {
      detail: 'The service token is unknown or revoked',
      headers: { 'WWW-Authenticate': 'Bearer realm="gatehouse", error="invalid_token"' },
    });
  }
  if (!hasScope(principal, 'enforce')) {
    throw new ProblemError('forbidden', { detail: 'This call needs the enforce scope' });
  }
}

const BEARER = /^Bearer\s+(\S+)\s*$/i;
/** The token of an `Authorization: Bearer <token>` header, if that is what it holds. */
const bearerOf = (header: string | string[] | undefined): string | undefined =>
  typeof header === 'string' ? BEARER.exec(header)?.[1] : undefined;

const JSON_TYPE = /^application\/(?:[\w.+-]+\+)?json\s*(?:;|$)/i;

/** node:http's body, read within the limit (the wire path reads bodies within it itself). */
function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const declared = Number(req.headers['content-length'] ?? 0);
    if (declared > MAX_BODY) {
      reject(new ProblemError('payload_too_large'));
      req.resume();
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > MAX_BODY) {
        reject(new ProblemError('payload_too_large'));
        req.destroy();
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () =>
      resolve(chunks.length === 1 ? chunks[0]!.toString('utf8') : Buffer.concat(chunks).toString('utf8')),
    );
    req.on('error', () =>
      reject(new ProblemError('validation_failed', { detail: 'The request body could not be read' })),
    );
  });
}

/**
 * Decides within the deadline; past it, the configured fail mode answers instead.
 *
 * One timer serves every request in flight rather than one timer (and a race of two promises) per
 * request: requests wait in arrival order, all with the same budget, so a sweep only looks at the
 * front of the queue. A request can be answered up to a tenth of the budget past it.
 *
 * The queue is a Fifo, not a Set. Under load V8 rehashes a small, busy Set every few additions,
 * and each replaced table keeps its entries and a link to the next table. Once one table had been
 * promoted, every later one was allocated in the old generation: each request in flight was then
 * referenced from old garbage, so its whole object graph outlived the next scavenge and was
 * promoted. Measured at 4,450 decisions/s: ~500 KB survived each scavenge with the Set, ~130 KB
 * without it (what is really in flight). An answered request clears its entry's reference to it
 * at once.
 */
function createDeadlines(deps: Pick<EnforceHttpDeps, 'deadlineMs' | 'failMode'>) {
  interface Waiting {
    at: number;
    /** Null once the request has its answer. */
    settle: ((outcome: EnforceOutcome) => void) | null;
  }
  const queue = new Fifo<Waiting>();
  let timer: NodeJS.Timeout | null = null;
  const tick = Math.max(1, Math.ceil(deps.deadlineMs / 10));
  const lateOutcome = (): EnforceOutcome =>
    deps.failMode() === 'open'
      ? { decision: 'allow', limits: [], headers: {} }
      : {
          decision: 'deny',
          reason: 'limiter_unavailable',
          retryAfterMs: 1000,
          limits: [],
          headers: { 'Retry-After': '1' },
        };
  // Answered requests leave from the front; most finish in arrival order, so the queue stays short.
  const dropAnswered = () => {
    while (queue.peek()?.settle === null) queue.shift();
  };
  const sweep = () => {
    timer = null;
    const t = Date.now();
    for (let w = queue.peek(); w && (w.settle === null || w.at <= t); w = queue.peek()) {
      queue.shift();
      w.settle?.(lateOutcome());
    }
    if (queue.size > 0) timer = setTimeout(sweep, tick).unref();
  };
  return (decide: Promise<EnforceOutcome>): Promise<EnforceOutcome> =>
    new Promise((resolve, reject) => {
      const w: Waiting = { at: Date.now() + deps.deadlineMs, settle: null };
      w.settle = (outcome) => {
        w.settle = null;
        resolve(outcome);
      };
      queue.push(w);
      if (timer === null) timer = setTimeout(sweep, tick).unref();
      decide.then(
        (outcome) => {
          if (w.settle === null) return;
          w.settle(outcome);
          dropAnswered();
        },
        (err: unknown) => {
          if (w.settle === null) return;
          w.settle = null;
          dropAnswered();
          reject(err);
        },
      );
    });
}

async function jsonDecision(deps: Handler, req: EnforceRequest, requestId: string): Promise<Answer> {
  const auth = req.headers.authorization;
  await authenticateGateway(deps, bearerOf(auth), 'Authorization: Bearer <token>');
  const type = req.headers['content-type'];
  if (typeof type !== 'string' || !JSON_TYPE.test(type)) {
    req.discardBody?.();
    throw new ProblemError('unsupported_media_type', { detail: 'Send the body as application/json' });
  }
  const raw = typeof req.body === 'string' ? req.body : await req.body();
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw);
  } catch {
    throw new ProblemError('malformed_json');
  }
  const input = readEnforceBody(parsed) ?? validated(parsed);
  const outcome = await deps.within(deps.enforce.decide(input));
  // The decision is the body: a gateway reads it, so enforcement always answers 200.
  return decisionAnswer(200, outcome, outcome.headers, requestId);
}

/** The schema's verdict on a body the fast check refused: its output, or a 400 naming each field. */
function validated(parsed: unknown): EnforceInput {
  const result = enforceBody.safeParse(parsed);
  if (!result.success) {
    const errors = result.error.issues
      .slice(0, 20)
      .flatMap((issue) =>
        issue.code === 'unrecognized_keys'
          ? issue.keys.map((k) => ({ field: k, message: 'is not a known field' }))
          : [{ field: issue.path.map(String).join('.') || 'body', message: issue.message }],
      );
    throw new ProblemError('validation_failed', {
      detail: `Invalid body: ${errors.map((e) => e.field).join(', ')}`,
      errors,
    });
  }
  return result.data;
}

/**
 * The client's address: walk X-Forwarded-For from the nearest hop back while the hop is a trusted
 * proxy; the first untrusted address is the client. Entries a client wrote itself sit further left
 * and are never reached, so the address cannot be spoofed through the header.
 */
export function clientAddress(
  remote: string | undefined,
  forwardedFor: string | undefined,
  trusted: readonly Cidr[],
): string {
  const hops = [...(forwardedFor ? forwardedFor.split(',').map((h) => h.trim()) : []), remote ?? ''];
  let nearest: string | null = null;
  for (let i = hops.length - 1; i >= 0; i--) {
    const ip = parseIp(hops[i]!);
    // An unreadable hop ends the walk: the last trusted proxy before it is all that is known.
    if (!ip) return nearest ?? remote ?? '';
    if (i === 0 || !trusted.some((c) => cidrContains(c, ip))) return ip.address;
    nearest = ip.address;
  }
  return nearest ?? remote ?? '';
}

const STATUS_FOR: Record<string, number> = {
  invalid_key: 401,
  account_suspended: 403,
  verification_required: 403,
  blocked_ip: 403,
  rate_limited: 429,
  quota_exhausted: 429,
  limiter_unavailable: 503,
};

async function forwardAuth(
  deps: Handler,
  req: EnforceRequest,
  requestId: string,
  nginx: boolean,
  pathSuffix: string | undefined,
): Promise<Answer> {
  const gatewayToken = req.headers['x-gatehouse-token'];
  await authenticateGateway(
    deps,
    typeof gatewayToken === 'string' ? gatewayToken : undefined,
    'X-Gatehouse-Token',
  );
  const h = req.headers;
  const auth = h.authorization;
  const bearer = bearerOf(auth);
  const apiKey = bearer ?? (typeof h['x-api-key'] === 'string' ? h['x-api-key'] : undefined);
  const ip = clientAddress(
    req.remoteAddress,
    typeof h['x-forwarded-for'] === 'string' ? h['x-forwarded-for'] : undefined,
    deps.trustedProxies,
  );
  const one = (name: string) => {
    const v = h[name];
    return typeof v === 'string' && v.length > 0 && v.length <= 2048 ? v : undefined;
  };
  const costHeader = one('x-gatehouse-cost');
  const cost = costHeader !== undefined && /^\d{1,7}$/.test(costHeader) ? Number(costHeader) : undefined;
  const outcome: EnforceOutcome = apiKey
    ? await deps.within(
        deps.enforce.decide({
          key: apiKey,
          ip,
          fingerprint: one('x-device-fingerprint'),
          tlsFingerprint: one('x-tls-fingerprint') ?? one('x-ja4') ?? one('x-ja3'),
          endpoint:
            one('x-forwarded-uri') ??
            one('x-original-uri') ??
            (pathSuffix ? pathSuffix.slice(0, 2048) : undefined),
          cost,
          userAgent: one('user-agent'),
        }),
      )
    : { decision: 'deny', reason: 'invalid_key', limits: [], headers: {} };

  const headers: Record<string, string> = { ...outcome.headers, 'X-Gatehouse-Decision': outcome.decision };
  if (outcome.accountId) headers['X-Gatehouse-Account'] = outcome.accountId;
  if (outcome.decision !== 'deny') {
    if (outcome.delayMs) {
      // The gateway holds the client's request while it waits for us: the delay happens here.
      await new Promise((r) => setTimeout(r, outcome.delayMs));
      headers['X-Gatehouse-Delay-Ms'] = String(outcome.delayMs);
    }
    if (outcome.degrade) headers['X-Gatehouse-Degrade'] = '1';
    return decisionAnswer(200, outcome, headers, requestId);
  }
  headers['X-Gatehouse-Reason'] = outcome.reason ?? 'denied';
  let status = STATUS_FOR[outcome.reason ?? ''] ?? 403;
  // nginx auth_request understands only 2xx, 401 and 403: anything else would reach the client as a
  // 500. In nginx mode the decision travels in X-Gatehouse-Status for error_page to turn back.
  if (nginx && status !== 401 && status !== 403) {
    headers['X-Gatehouse-Status'] = String(status);
    status = 403;
  }
  if (outcome.reason === 'invalid_key')
    headers['WWW-Authenticate'] = 'Bearer realm="api", error="invalid_token"';
  return decisionAnswer(status, outcome, headers, requestId);
}
