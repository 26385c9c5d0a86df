import { execFileSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer as createTlsServer } from 'node:tls';
import { Redis } from 'ioredis';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { createSlidingWindowLimiter } from '../../src/limits/limiter.ts';
import { deleteMatching } from '../../src/redis/client.ts';
import {
  encodeCommand,
  encodeParts,
  parseReply,
  RespClient,
  RespError,
  type RespValue,
} from '../../src/redis/resp-client.ts';

// The enforcement decision's Redis client: the protocol, against the real Redis, and against a
// small server that answers late, never, or in pieces.

const PREFIX = `test:resp:${randomUUID()}:`;
const clients: RespClient[] = [];
const client = (opts: Partial<ConstructorParameters<typeof RespClient>[0]> = {}) => {
  const c = new RespClient({
    url: 'redis://127.0.0.1:6379',
    connectTimeoutMs: 1_000,
    commandTimeoutMs: 1_000,
    ...opts,
  });
  clients.push(c);
  return c;
};
afterEach(() => {
  for (const c of clients.splice(0)) c.disconnect();
});
afterAll(async () => {
  const redis = new Redis({ host: '127.0.0.1', port: 6379 });
  await deleteMatching(redis, [`${PREFIX}*`]);
  redis.disconnect();
});

describe('RESP encoding and parsing', () => {
  it('encodes a command as an array of bulk strings, lengths in bytes', () => {
    expect(encodeCommand(['SET', 'k', 'héllo'])).toBe('*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$6\r\nhéllo\r\n');
    expect(encodeCommand(['PING'])).toBe('*1\r\n$4\r\nPING\r\n');
    expect(encodeCommand(['GET', ''])).toBe('*2\r\n$3\r\nGET\r\n$0\r\n\r\n');
  });

  it('encodes a command given in parts, however many arguments and however long', () => {
    expect(encodeParts([['HSET', 'h'], [], ['f', 'v']])).toBe(encodeCommand(['HSET', 'h', 'f', 'v']));
    // Past the made-once headers: 300 arguments, one of 2,000 bytes.
    const many = Array.from({ length: 299 }, (_, i) => String(i));
    const long = 'x'.repeat(2_000);
    const encoded = encodeParts([['RPUSH'], many.slice(1), [long]]);
    expect(encoded.startsWith('*300\r\n$5\r\nRPUSH\r\n$1\r\n1\r\n')).toBe(true);
    expect(encoded.endsWith(`$2000\r\n${long}\r\n`)).toBe(true);
    // A short command after a long one is not padded with what the long one left behind.
    expect(encodeCommand(['PING'])).toBe('*1\r\n$4\r\nPING\r\n');
  });

  it('parses every RESP2 type, and nothing until a value is complete', () => {
    const wire = Buffer.from(
      '+OK\r\n-NOSCRIPT No matching script\r\n:-42\r\n$5\r\nhé\r\n\r\n$-1\r\n*-1\r\n*3\r\n:1\r\n*2\r\n$1\r\na\r\n$-1\r\n-ERR inner\r\n',
    );
    const values: RespValue[] = [];
    let at = 0;
    for (let reply = parseReply(wire, at); reply; reply = parseReply(wire, at)) {
      values.push(reply.value);
      at = reply.end;
    }
    expect(at).toBe(wire.length);
    expect(values.slice(0, 1)).toEqual(['OK']);
    expect(values[1]).toBeInstanceOf(RespError);
    expect((values[1] as RespError).message).toBe('NOSCRIPT No matching script');
    expect(values.slice(2, 6)).toEqual([-42, 'hé\r\n', null, null]);
    const nested = values[6] as RespValue[];
    expect(nested.slice(0, 2)).toEqual([1, ['a', null]]);
    expect(nested[2]).toBeInstanceOf(RespError);
    // Every strict prefix that cuts the first array short parses as "not yet".
    const array = Buffer.from('*3\r\n:1\r\n*2\r\n$1\r\na\r\n$-1\r\n-ERR inner\r\n');
    for (let cut = 0; cut < array.length; cut++)
      expect(parseReply(array.subarray(0, cut), 0)).toBeUndefined();
  });

  it('refuses a byte stream that is not RESP', () => {
    expect(() => parseReply(Buffer.from('HTTP/1.1 400\r\n'), 0)).toThrow(/unexpected byte/);
    for (const bad of [':12a\r\n', ':\r\n', '*-\r\n', '$3\rx\r\nabc\r\n', ':1\r\r']) {
      expect(() => parseReply(Buffer.from(bad), 0), bad).toThrow(/malformed integer/);
    }
  });
});

describe('against Redis', () => {
  it('answers commands, and keeps going after an error reply', async () => {
    const c = client();
    await c.connect();
    expect(await c.call(['SET', `${PREFIX}a`, 'héllo'])).toBe('OK');
    expect(await c.call(['GET', `${PREFIX}a`])).toBe('héllo');
    await expect(c.call(['INCR', `${PREFIX}a`])).rejects.toBeInstanceOf(RespError);
    expect(await c.call(['EXISTS', `${PREFIX}a`, `${PREFIX}missing`])).toBe(1);
    expect(await c.call(['EVAL', 'return {1, {ARGV[1]}, false}', '0', 'x'])).toEqual([1, ['x'], null]);
  });

  it('matches 2,000 pipelined replies to their commands, in order', async () => {
    const c = client();
    await c.connect();
    const replies = await Promise.all(
      Array.from({ length: 2_000 }, (_, i) =>
        i % 2 === 0 ? c.call(['INCR', `${PREFIX}n`]) : c.call(['ECHO', `echo ${i}`]),
      ),
    );
    expect(replies).toEqual(Array.from({ length: 2_000 }, (_, i) => (i % 2 === 0 ? i / 2 + 1 : `echo ${i}`)));
  });

  it('selects the database named in the URL', async () => {
    const c = client({ url: 'redis://127.0.0.1:6379/3' });
    await c.connect();
    await c.call(['SET', `${PREFIX}db3`, '1']);
    const other = client();
    await other.connect();
    expect(await other.call(['EXISTS', `${PREFIX}db3`])).toBe(0);
    expect(await c.call(['DEL', `${PREFIX}db3`])).toBe(1);
  });

  it('speaks TLS for rediss:// URLs, and verifies the certificate', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'gatehouse-resp-tls-'));
    try {
      execFileSync(
        'openssl',
        ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=localhost']
          .concat(['-addext', 'subjectAltName=IP:127.0.0.1', '-keyout', join(dir, 'key.pem')])
          .concat(['-out', join(dir, 'cert.pem')]),
        { stdio: 'ignore' },
      );
      const cert = readFileSync(join(dir, 'cert.pem'));
      const server = createTlsServer({ key: readFileSync(join(dir, 'key.pem')), cert }, (socket) => {
        socket.on('data', () => socket.write('+PONG\r\n'));
        socket.on('error', () => undefined);
      });
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      const url = `rediss://127.0.0.1:${(server.address() as { port: number }).port}`;
      try {
        const trusted = client({ url, tls: { ca: cert } });
        await trusted.connect();
        expect(await trusted.call(['PING'])).toBe('PONG');
        // A certificate nobody vouched for: no connection.
        await expect(client({ url }).connect()).rejects.toThrow(/could not connect.*self-signed/);
      } finally {
        for (const c of clients.splice(0)) c.disconnect();
        await new Promise<void>((resolve) => server.close(() => resolve()));
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('rejects the first connect to a closed port at once', async () => {
    const started = Date.now();
    await expect(client({ url: 'redis://127.0.0.1:1' }).connect()).rejects.toThrow(/could not connect/);
    expect(Date.now() - started).toBeLessThan(1_000);
  });
});

/** A server speaking just enough RESP: `answer` decides what each command gets, if anything. */
async function fakeRedis(answer: (args: string[], socket: Socket) => string | null) {
  const seen: string[][] = [];
  const sockets: Socket[] = [];
  let connections = 0;
  const server: Server = createServer((socket) => {
    connections++;
    sockets.push(socket);
    let buf = Buffer.alloc(0);
    socket.on('data', (chunk) => {
      buf = Buffer.concat([buf, chunk]);
      for (let r = parseReply(buf, 0); r; r = parseReply(buf, 0)) {
        buf = buf.subarray(r.end);
        const args = r.value as string[];
        seen.push(args);
        const reply = answer(args, socket);
        if (reply !== null) socket.write(reply);
      }
    });
    socket.on('error', () => undefined);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  return {
    url: `redis://127.0.0.1:${port}`,
    seen,
    connections: () => connections,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('when Redis is slow, silent or odd', () => {
  it('lets the limiter resend its script after the server lost it (NOSCRIPT), once', async () => {
    let scriptLoaded = false;
    const fake = await fakeRedis((args) => {
      if (args[0] === 'PING') return '+PONG\r\n';
      if (args[0] === 'EVAL') scriptLoaded = true;
      if (args[0] === 'EVALSHA' && !scriptLoaded) return '-NOSCRIPT No matching script. Please use EVAL.\r\n';
      // One window: admitted; used 1, remaining 4, reset 1000 ms.
      return '*4\r\n:1\r\n:1\r\n:4\r\n:1000\r\n';
    });
    try {
      const c = client({ url: fake.url });
      await c.connect();
      const limiter = createSlidingWindowLimiter(c);
      const check = () =>
        limiter.check({
          now: 0,
          mode: 'enforce',
          cost: 1,
          limits: [{ name: 'key', key: 'k', limit: 5, windowMs: 60_000, buckets: 10 }],
        });
      expect(await check()).toMatchObject({ admitted: true, limits: [{ used: 1, remaining: 4 }] });
      // A restarted server: the script cache is empty again.
      scriptLoaded = false;
      expect(await check()).toMatchObject({ admitted: true });
      expect(await check()).toMatchObject({ admitted: true });
      expect(fake.seen.map((a) => a[0])).toEqual(['PING', 'EVAL', 'EVALSHA', 'EVAL', 'EVALSHA']);
    } finally {
      await fake.close();
    }
  });

  it('authenticates and selects the database before anything else', async () => {
    const fake = await fakeRedis((args) => (args[0] === 'PING' ? '+PONG\r\n' : '+OK\r\n'));
    try {
      const c = client({ url: `${fake.url.replace('//', '//gate:s%40cret@')}/2` });
      await c.connect();
      await c.call(['GET', 'x']);
      expect(fake.seen).toEqual([['AUTH', 'gate', 's@cret'], ['SELECT', '2'], ['PING'], ['GET', 'x']]);
    } finally {
      await fake.close();
    }
  });

  it('fails the first connect with the reason when the handshake is refused', async () => {
    const fake = await fakeRedis(() => '-WRONGPASS invalid username-password pair\r\n');
    try {
      await expect(client({ url: fake.url.replace('//', '//:nope@') }).connect()).rejects.toThrow(
        /WRONGPASS/,
      );
    } finally {
      await fake.close();
    }
  });

  it('gives the handshake the connect budget, not the command budget', async () => {
    // A Redis on a busy host answers its first PING late: past the tens of ms a decision may wait,
    // well within the time a connection may take to open.
    const fake = await fakeRedis((args, socket) => {
      if (args[0] === 'PING') setTimeout(() => socket.write('+PONG\r\n'), 150);
      return args[0] === 'PING' ? null : ':1\r\n';
    });
    try {
      const c = client({ url: fake.url, commandTimeoutMs: 20, connectTimeoutMs: 1_000 });
      await c.connect();
      expect(c.isReady).toBe(true);
      expect(await c.call(['GET', 'x'])).toBe(1);
    } finally {
      await fake.close();
    }
  });

  it('fails the first connect at the connect budget when the handshake gets no answer', async () => {
    const fake = await fakeRedis(() => null);
    try {
      const started = Date.now();
      await expect(
        client({ url: fake.url, commandTimeoutMs: 20, connectTimeoutMs: 300 }).connect(),
      ).rejects.toThrow(/no connection to Redis within 300 ms/);
      expect(Date.now() - started).toBeGreaterThanOrEqual(290);
      expect(Date.now() - started).toBeLessThan(1_000);
    } finally {
      await fake.close();
    }
  });

  it('reads replies that arrive a byte at a time', async () => {
    const fake = await fakeRedis((args, socket) => {
      if (args[0] === 'PING') return '+PONG\r\n';
      const reply = Buffer.from('*2\r\n:7\r\n$3\r\nabc\r\n');
      let i = 0;
      const drip = setInterval(() => {
        socket.write(reply.subarray(i, i + 1));
        if (++i === reply.length) clearInterval(drip);
      }, 1);
      return null;
    });
    try {
      const c = client({ url: fake.url });
      await c.connect();
      expect(await c.call(['ANY'])).toEqual([7, 'abc']);
    } finally {
      await fake.close();
    }
  });

  it('fails a command without a reply within its budget, and skips the reply that comes late', async () => {
    const fake = await fakeRedis((args) => {
      if (args[0] === 'PING') return '+PONG\r\n';
      // The first command's reply is held until the second command arrives (past the first one's
      // budget); then both replies go out at once.
      return args[0] === 'NEXT' ? ':1\r\n:2\r\n' : null;
    });
    try {
      const c = client({ url: fake.url, commandTimeoutMs: 60 });
      await c.connect();
      const started = Date.now();
      await expect(c.call(['SLOW'])).rejects.toThrow(/no reply from Redis within 60 ms/);
      expect(Date.now() - started).toBeLessThan(500);
      // Sent before the late reply arrived, answered after it: it must get its own reply, not 1.
      const second = c.call(['NEXT']);
      expect(await Promise.race([second, sleep(300).then(() => 'no reply')])).toBe(2);
    } finally {
      await fake.close();
    }
  });

  it('drops a connection whose replies stopped, and reconnects', async () => {
    let silent = true;
    const fake = await fakeRedis((args) => {
      if (args[0] === 'PING') return '+PONG\r\n';
      return silent ? null : ':5\r\n';
    });
    try {
      const c = client({ url: fake.url, commandTimeoutMs: 20, staleMs: 200 });
      await c.connect();
      await expect(c.call(['HANG'])).rejects.toThrow(/within 20 ms/);
      silent = false;
      // Dropped after ~200 ms; while it is down, commands fail at once rather than queue.
      for (let i = 0; i < 50 && c.isReady; i++) await sleep(20);
      expect(c.isReady).toBe(false);
      await expect(c.call(['X'])).rejects.toThrow(/not ready/);
      for (let i = 0; i < 50 && !c.isReady; i++) await sleep(20);
      expect(fake.connections()).toBe(2);
      expect(await c.call(['X'])).toBe(5);
    } finally {
      await fake.close();
    }
  });

  it('refuses new commands beyond maxPending instead of queueing without end', async () => {
    const fake = await fakeRedis((args) => (args[0] === 'PING' ? '+PONG\r\n' : null));
    try {
      const c = client({ url: fake.url, commandTimeoutMs: 5_000, maxPending: 3 });
      await c.connect();
      const waiting = [c.call(['A']), c.call(['B']), c.call(['C'])];
      for (const w of waiting) w.catch(() => undefined);
      await expect(c.call(['D'])).rejects.toThrow(/more than 3 Redis commands/);
      c.disconnect();
      await Promise.all(waiting.map((w) => expect(w).rejects.toThrow(/connection closed/)));
    } finally {
      await fake.close();
    }
  });
});
