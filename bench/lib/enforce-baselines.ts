// The two baselines bench/enforce.ts compares Gatehouse with, each in its own process:
// `tsx bench/lib/enforce-baselines.ts bare|express`. Both answer POST /v1/enforce and print
// "ready at http://127.0.0.1:<port>" once listening (PORT=0 picks a free port).
//
// - bare: node:http reads the body, JSON-parses it and answers a small JSON. No auth, no limit, no
//   Redis: the ceiling any enforcement endpoint on this machine and Node version could reach.
// - express: an Express 5 route behind express.json() doing one rate-limiter-flexible
//   RateLimiterRedis consume(key) over ioredis and answering JSON: what a team would write instead
//   of Gatehouse. It counts one dimension in one fixed window; Gatehouse counts five dimensions in
//   two sliding windows each and appends a usage event.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import express from 'express';
import { Redis } from 'ioredis';
import { RateLimiterRedis, RateLimiterRes } from 'rate-limiter-flexible';

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

function bareServer(): Server {
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
      const key = typeof parsed === 'object' && parsed !== null && 'key' in parsed ? parsed.key : undefined;
      if (typeof key !== 'string') {
        answer(res, 400, { error: 'validation_failed' });
        return;
      }
      answer(res, 200, { decision: 'allow' });
    });
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

let redis: Redis | undefined;
let server: Server;
if (kind === 'bare') {
  server = bareServer();
} else if (kind === 'express') {
  redis = new Redis(process.env.REDIS_URL ?? 'redis://127.0.0.1:6379', {
    enableAutoPipelining: process.env.RLF_AUTOPIPELINING === '1',
  });
  server = expressServer(redis);
} else {
  process.stderr.write('usage: tsx bench/lib/enforce-baselines.ts bare|express\n');
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
  const quit = redis ? redis.quit().catch(() => redis?.disconnect()) : Promise.resolve();
  void quit.finally(() => process.exit(0));
  setTimeout(() => process.exit(0), 2_000).unref();
};
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
