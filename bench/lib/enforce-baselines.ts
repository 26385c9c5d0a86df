// The baselines bench/enforce.ts compares Gatehouse with, each in its own process:
// `tsx bench/lib/enforce-baselines.ts bare|express|floor`. Each answers POST /v1/enforce and prints
// "ready at http://127.0.0.1:<port>" once listening (PORT=0 picks a free port).
//
// - bare: node:http reads the body, JSON-parses it and answers a small JSON. No auth, no limit, no
//   Redis: the ceiling any enforcement endpoint on this machine and Node version could reach.
// - express: an Express 5 route behind express.json() doing one rate-limiter-flexible
//   RateLimiterRedis consume(key) over ioredis and answering JSON: what a team would write instead
//   of Gatehouse. It counts one dimension in one fixed window; Gatehouse counts five dimensions in
//   two sliding windows each and appends a usage event.
// - floor: the least a decision of Gatehouse's design costs, with none of its logic: the request
//   read from the socket as Gatehouse reads a gateway's (src/http/wire.ts) and its body parsed,
//   then one script call with a decision's shape, sent the way Gatehouse sends it (its limiter's
//   encoding and pipelined Redis client: 5 dimensions x 2 windows in 5 hashes, and the usage
//   event), running bench/lib/script-floor.lua (the same Redis commands, no window arithmetic),
//   and an answer of Gatehouse's shape (10 limits, the RateLimit fields). No token, no key lookup,
//   no validation, no ASN, no rules. What it reaches is the ceiling of one script call per decision
//   on this machine: no implementation of that design can pass it.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import express from 'express';
import { Redis } from 'ioredis';
import { RateLimiterRedis, RateLimiterRes } from 'rate-limiter-flexible';
import { type Answer, attachWire } from '../../src/http/wire.ts';
import { createSlidingWindowLimiter, type LimitSpec } from '../../src/limits/limiter.ts';
import { encodeUsageEvent } from '../../src/usage/event.ts';
import { FLOOR, FloorClient } from './enforce-script-floor.ts';

const PATH = '/v1/enforce';
const kind = process.argv[2];
const port = Number(process.env.PORT ?? 0);

function answer(res: ServerResponse, status: number, payload: unknown): void {
  const body = JSON.stringify(payload);
  res.writeHead(status, {
    'Content-Type': 'application/json; charset=utf-8',
    'Content-Length': Buffer.byteLength(body),
  });
  res.end(body);
}

/** node:http answering POST /v1/enforce: the body read and JSON-parsed, then `answerBody`. */
function jsonServer(answerBody: (parsed: unknown, res: ServerResponse) => void): Server {
  return createServer((req: IncomingMessage, res: ServerResponse) => {
    if (req.method !== 'POST' || req.url !== PATH) {
      answer(res, 404, { error: 'not_found' });
      return;
    }
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      let parsed: unknown;
      try {
        parsed = JSON.parse(Buffer.concat(chunks).toString('utf8'));
      } catch {
        answer(res, 400, { error: 'malformed_json' });
        return;
      }
      answerBody(parsed, res);
    });
  });
}

function bareServer(): Server {
  return jsonServer((parsed, res) => {
    const key = typeof parsed === 'object' && parsed !== null && 'key' in parsed ? parsed.key : undefined;
    if (typeof key !== 'string') {
      answer(res, 400, { error: 'validation_failed' });
      return;
    }
    answer(res, 200, { decision: 'allow' });
  });
}

function expressServer(redis: Redis): Server {
  const limiter = new RateLimiterRedis({
    storeClient: redis,
    // ioredis: rate-limiter-flexible defines its script with defineCommand (EVALSHA); the flag is
    // for the `redis` package (v4+) only and must stay off here.
    useRedisPackage: false,
    keyPrefix: process.env.RLF_KEY_PREFIX ?? 'rlf-bench',
    // Large enough that every call is allowed: the benchmark measures the allow path.
    points: 1_000_000_000,
    duration: 60,
  });
  const app = express();
  app.use(express.json());
  app.post(PATH, async (req, res) => {
    const body: unknown = req.body;
    const key = typeof body === 'object' && body !== null && 'key' in body ? body.key : undefined;
    if (typeof key !== 'string') {
      res.status(400).json({ error: 'validation_failed' });
      return;
    }
    try {
      const r = await limiter.consume(key);
      res.json({ decision: 'allow', remaining: r.remainingPoints });
    } catch (err) {
      if (err instanceof RateLimiterRes) {
        res.status(429).json({ decision: 'deny', retryAfterMs: err.msBeforeNext });
        return;
      }
      res.status(503).json({ decision: 'deny', reason: 'limiter_unavailable' });
    }
  });
  return createServer(app);
}

/** The windows of bench:enforce's tier: a minute and a day in each dimension's hash. */
const FLOOR_WINDOWS = [
  { label: '1m', slot: 'm', windowMs: 60_000, buckets: 12 },
  { label: '24h', slot: 'd', windowMs: 86_400_000, buckets: 96 },
] as const;
const FLOOR_DIMENSIONS = ['key', 'user', 'device', 'ip', 'asn'] as const;
const FLOOR_LIMIT = 1_000_000_000;

async function floorServer(client: FloorClient, prefix: string): Promise<Server> {
  await client.callParts([['SCRIPT', 'LOAD', FLOOR]]);
  const limiter = createSlidingWindowLimiter(client);
  const tag = `{${prefix}:lim}`;
  // One shape object per dimension, as Gatehouse's tier plan has: the windows' encoding is reused.
  const shapes = FLOOR_DIMENSIONS.map(() => ({}));
  const policy = FLOOR_DIMENSIONS.flatMap((d) =>
    FLOOR_WINDOWS.map((w) => `"${d}:${w.label}";q=${FLOOR_LIMIT};w=${w.windowMs / 1000}`),
  ).join(', ');
  const decide = (parsed: unknown): Promise<Answer> => {
    const body = (typeof parsed === 'object' && parsed !== null ? parsed : {}) as {
      key?: unknown;
      ip?: unknown;
      fingerprint?: unknown;
      endpoint?: unknown;
      userAgent?: unknown;
    };
    const { key, ip, fingerprint } = body;
    if (typeof key !== 'string' || typeof ip !== 'string' || typeof fingerprint !== 'string') {
      return Promise.resolve(jsonAnswer(400, { error: 'validation_failed' }));
    }
    // The key stands in for its key id and account; the address's first byte for its ASN.
    const values = [key.slice(-24), key.slice(-24), fingerprint, ip, String(ip.charCodeAt(0))];
    const limits: LimitSpec[] = [];
    FLOOR_DIMENSIONS.forEach((d, i) => {
      const hash = `${tag}:floor:${d}:${values[i]}`;
      for (const w of FLOOR_WINDOWS) {
        limits.push({
          name: `${d}:${w.label}`,
          key: hash,
          slot: w.slot,
          limit: FLOOR_LIMIT,
          windowMs: w.windowMs,
          buckets: w.buckets,
          shape: shapes[i]!,
        });
      }
    });
    const now = Date.now();
    const fields = encodeUsageEvent({
      accountId: values[1]!,
      keyId: values[0]!,
      at: now,
      ip,
      asn: ip.charCodeAt(0),
      fingerprint,
      tlsFingerprint: null,
      userAgent: typeof body.userAgent === 'string' ? body.userAgent : null,
      endpoint: typeof body.endpoint === 'string' ? body.endpoint : null,
      cost: 1,
      decision: 'allow',
      reason: null,
      minhash: [],
      sampled: true,
    });
    return limiter
      .check({
        now,
        mode: 'enforce',
        cost: 1,
        limits,
        event: { stream: `${tag}:floor:usage`, maxLen: 1_000_000, fields, when: 'always' },
      })
      .then(
        (result): Answer => {
          const first = result.limits[0]!;
          const payload = {
            decision: 'allow',
            accountId: values[1],
            limits: result.limits.map((l) => ({
              name: l.name,
              limit: l.limit,
              remaining: l.remaining,
              resetSeconds: Math.ceil(l.resetMs / 1000),
            })),
          };
          return {
            status: 200,
            headers: {
              'RateLimit-Policy': policy,
              RateLimit: `"${first.name}";r=${first.remaining};t=${Math.ceil(first.resetMs / 1000)}`,
              'Content-Type': 'application/json; charset=utf-8',
            },
            body: JSON.stringify(payload),
          };
        },
        () => jsonAnswer(200, { decision: 'deny', reason: 'limiter_unavailable', limits: [] }),
      );
  };
  const server = jsonServer((parsed, res) => {
    void decide(parsed).then((a) => {
      res.writeHead(a.status, { ...a.headers, 'Content-Length': Buffer.byteLength(a.body) });
      res.end(a.body);
    });
  });
  // Served as Gatehouse serves a gateway's connections: read from the socket (src/http/wire.ts).
  attachWire(server, {
    accepts: (method, url) => method === 'POST' && url === PATH,
    maxBody: 256 * 1024,
    answer(request) {
      let parsed: unknown;
      try {
        parsed = JSON.parse(request.body);
      } catch {
        return Promise.resolve(jsonAnswer(400, { error: 'malformed_json' }));
      }
      return decide(parsed);
    },
  });
  return server;
}

const jsonAnswer = (status: number, payload: unknown): Answer => ({
  status,
  headers: { 'Content-Type': 'application/json; charset=utf-8' },
  body: JSON.stringify(payload),
});

let redis: Redis | undefined;
let floorClient: FloorClient | undefined;
let server: Server;
if (kind === 'bare') {
  server = bareServer();
} else if (kind === 'floor') {
  floorClient = new FloorClient({
    url: process.env.REDIS_URL ?? 'redis://127.0.0.1:6379',
    connectTimeoutMs: 2_000,
    commandTimeoutMs: 50,
  });
  await floorClient.connect();
  server = await floorServer(floorClient, process.env.FLOOR_KEY_PREFIX ?? 'floor-bench');
} else if (kind === 'express') {
  redis = new Redis(process.env.REDIS_URL ?? 'redis://127.0.0.1:6379', {
    enableAutoPipelining: process.env.RLF_AUTOPIPELINING === '1',
  });
  server = expressServer(redis);
} else {
  process.stderr.write('usage: tsx bench/lib/enforce-baselines.ts bare|express|floor\n');
  process.exit(2);
}

// As Gatehouse does (src/main.ts): keep-alive sockets outlive a load generator's idle gaps.
server.keepAliveTimeout = 65_000;
server.listen(port, '127.0.0.1', () => {
  const address = server.address();
  const bound = typeof address === 'object' && address !== null ? address.port : port;
  process.stdout.write(`${kind} baseline ready at http://127.0.0.1:${bound}\n`);
});

const shutdown = () => {
  server.close();
  server.closeAllConnections();
  floorClient?.disconnect();
  const quit = redis ? redis.quit().catch(() => redis?.disconnect()) : Promise.resolve();
  void quit.finally(() => process.exit(0));
  setTimeout(() => process.exit(0), 2_000).unref();
};
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
