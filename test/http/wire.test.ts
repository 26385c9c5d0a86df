import { createServer, type Server } from 'node:http';
import { connect } from 'node:net';
import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import { type Answer, attachWire, parseHead, type WireRequest } from '../../src/http/wire.ts';
import { RawClient } from '../support/raw-http.ts';

// The gateway's connections read straight from the socket (src/http/wire.ts): what it reads, what
// it leaves to node:http, and how it keeps, hands over and closes connections. A server with
// routes of its own stands in for Gatehouse: /fast is the wire's, everything else node:http's, and
// each answer says who gave it.

interface Echo {
  via: 'wire' | 'node';
  method: string;
  url: string;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

interface Rig {
  server: Server;
  port: number;
  seen: WireRequest[];
  handovers: string[];
  /** While set, the wire's answers wait for it. */
  hold: Promise<void> | null;
  answer: (request: WireRequest) => Answer;
}

const rigs: Rig[] = [];
afterEach(async () => {
  for (const rig of rigs.splice(0)) {
    rig.server.closeAllConnections();
    await new Promise((resolve) => rig.server.close(resolve));
  }
});

const echoAnswer = (request: WireRequest): Answer => ({
  status: 200,
  headers: { 'Content-Type': 'application/json' },
  body: JSON.stringify({
    via: 'wire',
    method: request.method,
    url: request.url,
    headers: request.headers,
    body: request.body,
  } satisfies Echo),
});

async function startRig(maxBody = 1024): Promise<Rig> {
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const echo: Echo = {
        via: 'node',
        method: req.method ?? '',
        url: req.url ?? '',
        headers: req.headers,
        body: Buffer.concat(chunks).toString('utf8'),
      };
      const text = JSON.stringify(echo);
      res.setHeader('Content-Type', 'application/json');
      res.setHeader('Content-Length', Buffer.byteLength(text));
      res.end(text);
    });
  });
  const rig: Rig = { server, port: 0, seen: [], handovers: [], hold: null, answer: echoAnswer };
  attachWire(server, {
    accepts: (method, url) => (method === 'POST' || method === 'GET') && url.startsWith('/fast'),
    maxBody,
    onHandover: (reason) => rig.handovers.push(reason),
    async answer(request) {
      rig.seen.push(request);
      if (rig.hold) await rig.hold;
      return rig.answer(request);
    },
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  rig.port = (server.address() as { port: number }).port;
  rigs.push(rig);
  return rig;
}

const post = (path: string, body: string, extra = '') =>
  `POST ${path} HTTP/1.1\r\nHost: gatehouse\r\nContent-Type: application/json\r\n${extra}Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`;

const echoOf = (r: { body: string }) => JSON.parse(Buffer.from(r.body, 'latin1').toString('utf8')) as Echo;

describe('requests read from the socket', () => {
  it('answers a plain request and keeps the connection for the next ones', async () => {
    const rig = await startRig();
    const c = await RawClient.open(rig.port);
    for (let i = 0; i < 3; i++) {
      c.send(post('/fast', `{"n":${i}}`, 'X-Forwarded-For:  203.0.113.9 \t\r\nAuthorization: Bearer t\r\n'));
      const [r] = await c.responses(1);
      expect(r!.status).toBe(200);
      expect(r!.headers.connection).toBe('keep-alive');
      expect(r!.headers['keep-alive']).toBe(`timeout=${Math.floor(rig.server.keepAliveTimeout / 1000)}`);
      expect(Date.parse(r!.headers.date!)).toBeGreaterThan(Date.now() - 5_000);
      const echo = echoOf(r!);
      expect(echo).toMatchObject({ via: 'wire', method: 'POST', url: '/fast', body: `{"n":${i}}` });
      // Names lower-cased, values without their surrounding whitespace, as node:http gives them.
      expect(echo.headers).toEqual({
        host: 'gatehouse',
        'content-type': 'application/json',
        'x-forwarded-for': '203.0.113.9',
        authorization: 'Bearer t',
        'content-length': String(`{"n":${i}}`.length),
      });
    }
    expect(rig.seen).toHaveLength(3);
    expect(rig.seen[0]!.remoteAddress).toBe('127.0.0.1');
    expect(c.isClosed).toBe(false);
    c.destroy();
  });

  it('counts Content-Length in bytes and gives the body as UTF-8', async () => {
    const rig = await startRig();
    const c = await RawClient.open(rig.port);
    const body = '{"q":"héllo ✓"}';
    c.send(Buffer.from(post('/fast', body).replace(/\r\n\r\n.*$/s, '\r\n\r\n') + body, 'utf8'));
    const [r] = await c.responses(1);
    expect(echoOf(r!).body).toBe(body);
    c.destroy();
  });

  it('answers requests pipelined in one write, in order, one at a time', async () => {
    const rig = await startRig();
    let release!: () => void;
    rig.hold = new Promise((r) => {
      release = r;
    });
    const c = await RawClient.open(rig.port);
    c.send(post('/fast', '1') + post('/fast', '2') + post('/fast', '3'));
    await new Promise((r) => setTimeout(r, 50));
    expect(rig.seen).toHaveLength(1); // the second waits for the first's answer
    rig.hold = null;
    release();
    const rs = await c.responses(3);
    expect(rs.map((r) => echoOf(r).body)).toEqual(['1', '2', '3']);
    c.destroy();
  });

  it('waits for a body that comes in pieces', async () => {
    const rig = await startRig();
    const c = await RawClient.open(rig.port);
    const body = '{"key":"abcdefghij"}';
    const whole = post('/fast', body);
    const headEnd = whole.indexOf('\r\n\r\n') + 4;
    c.send(whole.slice(0, headEnd));
    await new Promise((r) => setTimeout(r, 30));
    c.send(body.slice(0, 5));
    await new Promise((r) => setTimeout(r, 30));
    c.send(body.slice(5) + post('/fast', 'next'));
    const rs = await c.responses(2);
    expect(rs.map((r) => echoOf(r))).toMatchObject([
      { via: 'wire', body },
      { via: 'wire', body: 'next' },
    ]);
    c.destroy();
  });

  it('answers with Connection: close and closes when the request asks for it', async () => {
    const rig = await startRig();
    const c = await RawClient.open(rig.port);
    c.send(post('/fast', 'a', 'Connection: close\r\n') + post('/fast', 'ignored'));
    const [r] = await c.responses(1);
    expect(r!.headers.connection).toBe('close');
    await c.closed;
    expect(rig.seen).toHaveLength(1);
  });

  it('answers what was asked before the client half-closed, then closes', async () => {
    const rig = await startRig();
    const c = await RawClient.open(rig.port);
    c.send(post('/fast', 'last'));
    c.end();
    const [r] = await c.responses(1);
    expect(echoOf(r!)).toMatchObject({ via: 'wire', body: 'last' });
    await c.closed;
  });

  it('answers 500 and closes when the route fails, or gives a header that cannot be written', async () => {
    const rig = await startRig();
    rig.answer = () => {
      throw new Error('boom');
    };
    const c = await RawClient.open(rig.port);
    c.send(post('/fast', 'x'));
    const [r] = await c.responses(1);
    expect(r!.status).toBe(500);
    expect(r!.headers['content-type']).toMatch(/^application\/problem\+json/);
    expect(JSON.parse(r!.body)).toMatchObject({ code: 'internal_error', status: 500 });
    expect(r!.body).not.toContain('boom');
    await c.closed;

    rig.answer = () => ({ status: 200, headers: { 'X-Bad': 'a\r\nSet-Cookie: x=1' }, body: '{}' });
    const d = await RawClient.open(rig.port);
    d.send(post('/fast', 'x'));
    const [bad] = await d.responses(1);
    expect(bad!.status).toBe(500);
    expect(d.received).not.toContain('Set-Cookie');
    await d.closed;
  });
});

describe('connections handed to node:http', () => {
  it('hands over at the first request that is not the wire’s, with every byte, for good', async () => {
    const rig = await startRig();
    const c = await RawClient.open(rig.port);
    c.send(post('/fast', '1') + post('/other', '2') + post('/fast', '3'));
    const rs = await c.responses(3);
    expect(rs.map((r) => [echoOf(r).via, echoOf(r).url, echoOf(r).body])).toEqual([
      ['wire', '/fast', '1'],
      ['node', '/other', '2'],
      ['node', '/fast', '3'],
    ]);
    c.send(post('/fast', '4'));
    expect(echoOf((await c.responses(1))[0]!).via).toBe('node');
    expect(rig.handovers).toEqual(['route']);
    c.destroy();
  });

  // Each of these reaches node:http, which answers (or refuses) it as it answers any request.
  const cases: Array<[string, string | string[], number]> = [
    [
      'a chunked body',
      'POST /fast HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n',
      200,
    ],
    [
      'Content-Length and Transfer-Encoding both',
      'POST /fast HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n',
      400,
    ],
    [
      'two Content-Lengths',
      'POST /fast HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab',
      400,
    ],
    ['a signed Content-Length', 'POST /fast HTTP/1.1\r\nHost: h\r\nContent-Length: +1\r\n\r\na', 400],
    ['no Host', 'POST /fast HTTP/1.1\r\nContent-Length: 1\r\n\r\na', 400],
    ['HTTP/1.0', 'POST /fast HTTP/1.0\r\nHost: h\r\nContent-Length: 1\r\n\r\na', 200],
    ['an obs-fold line', 'POST /fast HTTP/1.1\r\nHost: h\r\nX-A: 1\r\n 2\r\nContent-Length: 1\r\n\r\na', 400],
    ['a bare LF in the head', 'POST /fast HTTP/1.1\r\nHost: h\nX-A: 1\r\nContent-Length: 1\r\n\r\na', 400],
    ['a NUL in a value', 'POST /fast HTTP/1.1\r\nHost: h\r\nX-A: a\0b\r\nContent-Length: 1\r\n\r\na', 400],
    ['a space before the colon', 'POST /fast HTTP/1.1\r\nHost : h\r\nContent-Length: 1\r\n\r\na', 400],
    [
      'a repeated header',
      'POST /fast HTTP/1.1\r\nHost: h\r\nX-A: 1\r\nx-a: 2\r\nContent-Length: 1\r\n\r\na',
      200,
    ],
    [
      'Expect: 100-continue',
      'POST /fast HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\na',
      100,
    ],
    [
      'a body over the limit',
      `POST /fast HTTP/1.1\r\nHost: h\r\nContent-Length: 1025\r\n\r\n${'a'.repeat(1025)}`,
      200,
    ],
    ['a head in two reads', ['POST /fast HTTP/1.1\r\nHost: h\r\n', 'Content-Length: 1\r\n\r\na'], 200],
    [
      '101 headers',
      `POST /fast HTTP/1.1\r\nHost: h\r\n${Array.from({ length: 100 }, (_, i) => `X-${i}: v\r\n`).join('')}Content-Length: 1\r\n\r\na`,
      200,
    ],
    [
      'an empty line before the request',
      '\r\nPOST /fast HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\n\r\na',
      200,
    ],
  ];
  it.each(cases)('%s', async (_name, request, status) => {
    const rig = await startRig();
    const c = await RawClient.open(rig.port);
    for (const part of Array.isArray(request) ? request : [request]) {
      c.send(part);
      await new Promise((r) => setTimeout(r, 30));
    }
    const [r] = await c.responses(1);
    expect(r!.status).toBe(status);
    if (status === 200) expect(echoOf(r!).via).toBe('node');
    expect(rig.seen).toHaveLength(0);
    expect(rig.handovers).toEqual([Array.isArray(request) ? 'partial' : 'form']);
    c.destroy();
  });

  it('names a head in two reads for another route as such', async () => {
    const rig = await startRig();
    const c = await RawClient.open(rig.port);
    c.send('GET /other HTTP/1.1\r\nHost: h\r\n');
    await new Promise((r) => setTimeout(r, 30));
    c.send('\r\n');
    expect(echoOf((await c.responses(1))[0]!).via).toBe('node');
    expect(rig.handovers).toEqual(['route']);
    c.destroy();
  });
});

describe('closing', () => {
  it('closes a connection left idle for keepAliveTimeout', async () => {
    const rig = await startRig();
    rig.server.keepAliveTimeout = 300;
    const c = await RawClient.open(rig.port);
    c.send(post('/fast', 'x'));
    await c.responses(1);
    const t = Date.now();
    await c.closed;
    expect(Date.now() - t).toBeGreaterThanOrEqual(200);
  });

  it('answers 408 to a body that stops coming, and to one trickled past requestTimeout', async () => {
    const rig = await startRig();
    rig.server.keepAliveTimeout = 300;
    const stalled = await RawClient.open(rig.port);
    stalled.send(post('/fast', 'x').replace('Content-Length: 1', 'Content-Length: 10'));
    const [r] = await stalled.responses(1);
    expect(r!.status).toBe(408);
    await stalled.closed;

    rig.server.keepAliveTimeout = 5_000;
    rig.server.requestTimeout = 400;
    const trickle = await RawClient.open(rig.port);
    trickle.send(post('/fast', 'x').replace('Content-Length: 1', 'Content-Length: 100').slice(0, -1));
    const started = Date.now();
    while (!trickle.isClosed && Date.now() - started < 3_000) {
      trickle.send('a');
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(trickle.received).toContain('408 Request Timeout');
    expect(rig.seen).toHaveLength(0);
  });

  it('closes idle connections at once on close(), and busy ones after their answer', async () => {
    const rig = await startRig();
    const idle = await RawClient.open(rig.port);
    idle.send(post('/fast', 'x'));
    await idle.responses(1);
    const busy = await RawClient.open(rig.port);
    let release!: () => void;
    rig.hold = new Promise((r) => {
      release = r;
    });
    busy.send(post('/fast', 'y'));
    const receiving = await RawClient.open(rig.port);
    const whole = post('/fast', '{"half":"sent"}');
    receiving.send(whole.slice(0, -5));
    await new Promise((r) => setTimeout(r, 30));
    const closed = new Promise((resolve) => rig.server.close(resolve));
    await idle.closed;
    expect(busy.isClosed).toBe(false);
    expect(receiving.isClosed).toBe(false);
    receiving.send(whole.slice(-5));
    release();
    const [r] = await busy.responses(1);
    expect(r!.headers.connection).toBe('close');
    await busy.closed;
    const [rest] = await receiving.responses(1);
    expect(echoOf(rest!).body).toBe('{"half":"sent"}');
    expect(rest!.headers.connection).toBe('close');
    await receiving.closed;
    await closed;
    rigs.splice(rigs.indexOf(rig), 1);
  });

  it('on close(), still delivers an answer the client had not read yet, then closes', async () => {
    const rig = await startRig();
    const big = 'y'.repeat(8 * 1024 * 1024); // more than the socket buffers hold
    rig.answer = () => ({ status: 200, headers: {}, body: big });
    const socket = connect(rig.port, '127.0.0.1');
    await new Promise((resolve) => socket.once('connect', resolve));
    socket.pause();
    socket.write(post('/fast', 'x'));
    await new Promise((r) => setTimeout(r, 200));
    const closed = new Promise((resolve) => rig.server.close(resolve));
    let received = 0;
    socket.on('data', (chunk: Buffer) => {
      received += chunk.length;
    });
    const ended = new Promise((resolve) => socket.once('end', resolve));
    socket.resume();
    await ended;
    expect(received).toBeGreaterThan(big.length);
    await closed;
    rigs.splice(rigs.indexOf(rig), 1);
    socket.destroy();
  });

  it('stops reading a client that does not read its answers, and goes on when it does', async () => {
    const rig = await startRig();
    const big = 'x'.repeat(64 * 1024);
    rig.answer = () => ({ status: 200, headers: {}, body: big });
    const count = 400; // 26 MB of answers: far more than the socket buffers hold
    const socket = connect(rig.port, '127.0.0.1');
    await new Promise((resolve) => socket.once('connect', resolve));
    socket.pause();
    socket.write(Array.from({ length: count }, () => post('/fast', 'x')).join(''));
    await new Promise((r) => setTimeout(r, 500));
    // Only what fits in the socket buffers was answered; the rest waits, unread.
    expect(rig.seen.length).toBeLessThan(count / 2);
    let answers = 0;
    let tail = '';
    const all = new Promise<void>((resolve) => {
      socket.on('data', (chunk: Buffer) => {
        const text = tail + chunk.toString('latin1');
        answers += text.split('HTTP/1.1 200 OK').length - 1;
        // Shorter than the marker: a marker split between chunks is counted once, in the next.
        tail = text.slice(-14);
        if (answers === count) resolve();
      });
    });
    socket.resume();
    await all;
    expect(rig.seen).toHaveLength(count);
    socket.destroy();
  });

  it('stops reading while a pipelined backlog is over its bound, and answers all of it', async () => {
    const rig = await startRig(64);
    let release!: () => void;
    rig.hold = new Promise((r) => {
      release = r;
    });
    const c = await RawClient.open(rig.port);
    const count = 400; // ~40 KB, past the 16 KiB + 64 B bound
    const all = Array.from({ length: count }, (_, i) => post('/fast', String(i).padStart(16, '0'))).join('');
    c.send(all);
    await new Promise((r) => setTimeout(r, 50));
    rig.hold = null;
    release();
    const rs = await c.responses(count, 10_000);
    expect(rs.map((r) => Number(echoOf(r).body))).toEqual(Array.from({ length: count }, (_, i) => i));
    expect(rs.every((r) => echoOf(r).via === 'wire')).toBe(true);
    c.destroy();
  });
});

describe('parseHead against node:http', () => {
  // Whatever the wire reads, node:http must read the same way: the same method, target, headers
  // and body length. Heads are built from parts that each break a rule now and then; the ones
  // the wire reads are sent to a plain node:http server that echoes what it read.
  const names = ['Content-Type', 'X-Forwarded-For', 'Authorization', 'Connection', 'X-A', 'User-Agent'];
  const odd = [
    'Transfer-Encoding',
    'Expect',
    'Upgrade',
    'Host',
    'Host ',
    ' Host',
    'X A',
    'X\tA',
    'Content-Length',
  ];
  const values = [
    'h',
    ' v ',
    '',
    '\tx\t',
    'a b',
    'close',
    'keep-alive',
    'Upgrade',
    'chunked',
    '\xe9\xff',
    '1',
  ];
  const badValues = ['a\0b', 'a\rb', 'a\nb', 'a\x7fb', 'a\x01', '\rb', '\nb'];
  const rare = <T>(common: fc.Arbitrary<T>, unusual: fc.Arbitrary<T>) =>
    fc.oneof({ weight: 19, arbitrary: common }, { weight: 1, arbitrary: unusual });
  const header = fc.tuple(
    rare(fc.constantFrom(...names), fc.constantFrom(...odd)),
    rare(fc.constantFrom(...values), fc.constantFrom(...badValues)),
    rare(fc.constant('\r\n'), fc.constantFrom('\n', '\r\n ', '\r\n\t')),
  );
  const request = fc.record({
    method: rare(fc.constantFrom('POST', 'GET'), fc.constantFrom('post', 'HEAD', 'PUT', 'FOO')),
    url: rare(fc.constantFrom('/fast', '/fast?a=1', '/fast/x'), fc.constantFrom('/fast\x7f', '/fa st', '*')),
    version: rare(fc.constant('HTTP/1.1'), fc.constantFrom('HTTP/1.0', 'HTTP/1.1 ', 'HTTP/2.0', 'http/1.1')),
    headers: fc.oneof(
      { weight: 9, arbitrary: fc.uniqueArray(header, { maxLength: 5, selector: (h) => h[0].toLowerCase() }) },
      { weight: 1, arbitrary: fc.array(header, { maxLength: 5 }) },
    ),
    length: rare(
      fc.oneof(fc.integer({ min: 0, max: 40 }).map(String), fc.constant(null)),
      fc.constantFrom('', '+3', '3 3', '0x3', '-1', '03', '3,3', ' 3', '99999999999'),
    ),
  });

  it('reads nothing that node:http reads differently', async () => {
    const server = createServer((req, res) => {
      let length = 0;
      req.on('data', (c: Buffer) => {
        length += c.length;
      });
      req.on('end', () =>
        res.end(JSON.stringify({ method: req.method, url: req.url, headers: req.headers, length })),
      );
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const port = (server.address() as { port: number }).port;
    let read = 0;
    let refused = 0;
    try {
      await fc.assert(
        fc.asyncProperty(request, async (r) => {
          let head = `${r.method} ${r.url} ${r.version}\r\n`;
          for (const [name, value, end] of r.headers) head += `${name}: ${value}${end}`;
          if (r.length !== null) head += `Content-Length: ${r.length}\r\n`;
          const parsed = parseHead(`${head}Host: gatehouse`, () => true, 1024);
          if (typeof parsed === 'string') {
            refused++;
            return;
          }
          read++;
          const text = `${head}Host: gatehouse\r\n\r\n${'b'.repeat(parsed.length)}`;
          const c = await RawClient.open(port);
          c.send(text);
          const [answer] = await c.responses(1);
          c.destroy();
          expect(answer!.status).toBe(200);
          const node = JSON.parse(Buffer.from(answer!.body, 'latin1').toString('utf8')) as {
            method: string;
            url: string;
            headers: Record<string, string>;
            length: number;
          };
          expect({ method: node.method, url: node.url, length: node.length }).toEqual({
            method: parsed.method,
            url: parsed.url,
            length: parsed.length,
          });
          expect(node.headers).toEqual({ ...parsed.headers });
        }),
        { numRuns: 500, seed: 20261207 },
      );
    } finally {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    }
    // Both sides of the rule were exercised.
    expect(read).toBeGreaterThan(100);
    expect(refused).toBeGreaterThan(50);
  });
});
