// Load generator for bench/enforce.ts, in its own process so that it never shares an event loop
// with the server it measures: `tsx bench/lib/enforce-load.ts <config.json>`. It runs a warm-up,
// then the measured run, and prints one JSON line (LoadResult) on stdout.
//
// Modes (see LoadMode): `closed` and `autocannon-rate` drive autocannon's API; `paced` is an
// open-loop generator written here, because autocannon's rate limit is not a pacing: each
// connection sends its per-second quota back to back as soon as its one-second timer fires
// (lib/httpClient.js, `reqsMadeThisSecond`), so at half the saturation rate the server is
// saturated for about half of every second and idle for the rest. Latency at half load needs
// requests spread evenly in time, which `paced` does (and it also reports latency from the instant
// each request was due, so a server that falls behind cannot hide it: no coordinated omission).
import type { EventEmitter } from 'node:events';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { connect, type Socket } from 'node:net';
import {
  type LoadConfig,
  type LoadResult,
  MEASURED,
  MEASURING,
  SampleBuffer,
  summarise,
} from './enforce-common.ts';

// --- the part of autocannon 9's API used here (it ships no types) ---------------------------

interface BuiltRequest {
  method: string;
  path: string;
  headers: Record<string, string>;
  body?: string;
}

interface AutocannonRequest extends BuiltRequest {
  /** Called before every request it describes; may replace any part of it. */
  setupRequest?: (request: BuiltRequest) => BuiltRequest;
}

interface AutocannonOptions {
  url: string;
  connections: number;
  duration: number;
  timeout: number;
  overallRate?: number;
  requests: AutocannonRequest[];
}

interface AutocannonResult {
  duration: number;
  errors: number;
  timeouts: number;
  non2xx: number;
  '2xx': number;
  latency: { p50: number; p99: number };
  requests: { average: number };
}

interface AutocannonInstance extends EventEmitter {
  stop(): void;
}

type Autocannon = (
  opts: AutocannonOptions,
  done: (err: Error | null, result: AutocannonResult) => void,
) => AutocannonInstance;

const autocannon = createRequire(import.meta.url)('autocannon') as Autocannon;

// A random start, so that consecutive runs do not all begin with the same bodies.
let next = Math.floor(Math.random() * 1_000_000);

function runAutocannon(
  config: LoadConfig,
  bodies: readonly string[],
  durationSec: number,
  onResponse?: (status: number, ms: number) => void,
): Promise<AutocannonResult> {
  // One request template whose body is the next prepared one, from a counter shared by every
  // connection: a static `requests` list would be walked from its start by each connection in step,
  // so a run would only ever use its first few hundred bodies (and keys). No Content-Length here:
  // autocannon adds its own, and a second one makes Node refuse the request.
  const requests: AutocannonRequest[] = [
    {
      method: 'POST',
      path: config.path,
      headers: config.headers,
      setupRequest: (request) => {
        const body = bodies[next % bodies.length]!;
        next++;
        return { ...request, body };
      },
    },
  ];
  return new Promise((resolve, reject) => {
    const instance = autocannon(
      {
        url: config.url,
        connections: config.connections,
        duration: durationSec,
        timeout: config.timeoutSec,
        ...(config.mode === 'autocannon-rate' && config.rate ? { overallRate: Math.round(config.rate) } : {}),
        requests,
      },
      (err, result) => (err ? reject(err) : resolve(result)),
    );
    if (onResponse) {
      instance.on('response', (_client: unknown, status: number, _bytes: number, ms: number) =>
        onResponse(status, ms),
      );
    }
  });
}

/** Runs `fn` between the two marker lines and measures this process's CPU over it. */
async function measured<T>(fn: () => Promise<T>): Promise<{ value: T; cpuPct: number }> {
  process.stdout.write(`${MEASURING}\n`);
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  const value = await fn();
  const cpu = process.cpuUsage(cpu0);
  const seconds = (performance.now() - t0) / 1000;
  process.stdout.write(`${MEASURED}\n`);
  return { value, cpuPct: (100 * (cpu.user + cpu.system)) / 1e6 / seconds };
}

async function autocannonMode(config: LoadConfig, bodies: readonly string[]): Promise<LoadResult> {
  if (config.warmupSec > 0) await runAutocannon(config, bodies, config.warmupSec);
  const samples = new SampleBuffer();
  let responses = 0;
  const { value: result, cpuPct } = await measured(() =>
    runAutocannon(config, bodies, config.durationSec, (status, ms) => {
      responses++;
      if (status >= 200 && status < 300) samples.push(ms);
    }),
  );
  return {
    mode: config.mode,
    durationSec: result.duration,
    responses,
    ok2xx: result['2xx'],
    non2xx: result.non2xx,
    errors: result.errors,
    timeouts: result.timeouts,
    rps: result['2xx'] / result.duration,
    latency: summarise(samples.values()),
    autocannon: { p50: result.latency.p50, p99: result.latency.p99, reqPerSecAvg: result.requests.average },
    loaderCpuPct: cpuPct,
  };
}

// --- paced, open loop ------------------------------------------------------------------------
//
// Raw keep-alive sockets with prebuilt requests and a minimal response reader (status line and
// Content-Length, which every server measured here sends): node:http's client costs several times
// more CPU per request, and on a small machine the generator would steal the server's core.

interface PacedOutcome {
  sent: number;
  ok2xx: number;
  non2xx: number;
  errors: number;
  timeouts: number;
  fromSend: SampleBuffer;
  fromSchedule: SampleBuffer;
  lateStarts: number;
  seconds: number;
}

interface Pending {
  due: number;
  request: Buffer;
}

const HEADER_END = Buffer.from('\r\n\r\n');

class Connection {
  private socket: Socket;
  private buf: Buffer = Buffer.alloc(0);
  private current: { due: number; sentAt: number; timer: NodeJS.Timeout } | null = null;
  private closed = false;

  constructor(
    private readonly host: string,
    private readonly port: number,
    private readonly timeoutMs: number,
    private readonly onDone: (
      conn: Connection,
      outcome: 'ok' | 'non2xx' | 'error' | 'timeout',
      due: number,
      sentAt: number,
    ) => void,
  ) {
    this.socket = this.open();
  }

  private open(): Socket {
    const socket = connect({ host: this.host, port: this.port, noDelay: true });
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('error', () => undefined);
    socket.on('close', () => {
      if (this.closed) return;
      this.finish('error');
      this.buf = Buffer.alloc(0);
      this.socket = this.open();
    });
    return socket;
  }

  send(p: Pending): void {
    const timer = setTimeout(() => {
      this.finish('timeout');
      this.socket.destroy();
    }, this.timeoutMs);
    this.current = { due: p.due, sentAt: performance.now(), timer };
    this.socket.write(p.request);
  }

  private onData(chunk: Buffer): void {
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
    const end = this.buf.indexOf(HEADER_END);
    if (end === -1) return;
    const head = this.buf.toString('latin1', 0, end);
    const length = Number(/\r\ncontent-length:\s*(\d+)/i.exec(head)?.[1] ?? 0);
    const total = end + 4 + length;
    if (this.buf.length < total) return;
    const status = Number(head.slice(9, 12));
    this.buf = this.buf.subarray(total);
    this.finish(status >= 200 && status < 300 ? 'ok' : 'non2xx');
  }

  private finish(outcome: 'ok' | 'non2xx' | 'error' | 'timeout'): void {
    const c = this.current;
    if (!c) return;
    clearTimeout(c.timer);
    this.current = null;
    this.onDone(this, outcome, c.due, c.sentAt);
  }

  close(): void {
    this.closed = true;
    this.socket.destroy();
  }
}

async function paced(
  config: LoadConfig,
  bodies: readonly string[],
  durationSec: number,
): Promise<PacedOutcome> {
  const rate = config.rate ?? 0;
  if (!(rate > 0)) throw new Error('paced mode needs a rate');
  const target = new URL(config.url);
  const headerLines = Object.entries(config.headers)
    .map(([k, v]) => `${k}: ${v}\r\n`)
    .join('');
  const requests = bodies.map((body) =>
    Buffer.from(
      `POST ${config.path} HTTP/1.1\r\nHost: ${target.host}\r\nConnection: keep-alive\r\n${headerLines}` +
        `Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
    ),
  );
  const out: PacedOutcome = {
    sent: 0,
    ok2xx: 0,
    non2xx: 0,
    errors: 0,
    timeouts: 0,
    fromSend: new SampleBuffer(),
    fromSchedule: new SampleBuffer(),
    lateStarts: 0,
    seconds: durationSec,
  };
  const total = Math.round(rate * durationSec);
  const interval = 1000 / rate;
  // At most `connections` requests in flight; the rest wait here, and that wait shows up in the
  // latency measured from the schedule.
  const waiting: Pending[] = [];
  const idle: Connection[] = [];
  let settled = 0;
  let finish: () => void = () => {};
  const allDone = new Promise<void>((resolve) => {
    finish = resolve;
  });
  const onDone = (
    conn: Connection,
    outcome: 'ok' | 'non2xx' | 'error' | 'timeout',
    due: number,
    sentAt: number,
  ) => {
    const end = performance.now();
    if (outcome === 'ok') {
      out.ok2xx++;
      out.fromSend.push(end - sentAt);
      out.fromSchedule.push(end - due);
    } else if (outcome === 'non2xx') out.non2xx++;
    else if (outcome === 'timeout') out.timeouts++;
    else out.errors++;
    if (++settled === total) finish();
    const next = waiting.shift();
    if (next) dispatch(conn, next);
    else idle.push(conn);
  };
  const dispatch = (conn: Connection, p: Pending) => {
    if (performance.now() - p.due > 1) out.lateStarts++;
    conn.send(p);
  };
  const port = Number(target.port || 80);
  const conns = Array.from(
    { length: config.connections },
    () => new Connection(target.hostname, port, config.timeoutSec * 1000, onDone),
  );
  idle.push(...conns);
  const start = performance.now();
  await new Promise<void>((resolve) => {
    const tick = () => {
      const due = Math.min(total, Math.floor((performance.now() - start) / interval) + 1);
      while (out.sent < due) {
        const p = { due: start + out.sent * interval, request: requests[out.sent % requests.length]! };
        out.sent++;
        const conn = idle.pop();
        if (conn) dispatch(conn, p);
        else waiting.push(p);
      }
      if (out.sent < total) setTimeout(tick, 1);
      else resolve();
    };
    tick();
  });
  if (settled < total) await allDone;
  for (const c of conns) c.close();
  return out;
}

async function pacedMode(config: LoadConfig, bodies: readonly string[]): Promise<LoadResult> {
  if (config.warmupSec > 0) await paced(config, bodies, config.warmupSec);
  const { value: o, cpuPct } = await measured(() => paced(config, bodies, config.durationSec));
  return {
    mode: 'paced',
    durationSec: o.seconds,
    responses: o.ok2xx + o.non2xx,
    ok2xx: o.ok2xx,
    non2xx: o.non2xx,
    errors: o.errors,
    timeouts: o.timeouts,
    rps: o.ok2xx / o.seconds,
    latency: summarise(o.fromSend.values()),
    fromSchedule: summarise(o.fromSchedule.values()),
    lateStarts: o.lateStarts,
    loaderCpuPct: cpuPct,
  };
}

const configPath = process.argv[2];
if (!configPath) {
  process.stderr.write('usage: tsx bench/lib/enforce-load.ts <config.json>\n');
  process.exit(2);
}
const config = JSON.parse(readFileSync(configPath, 'utf8')) as LoadConfig;
const bodies = JSON.parse(readFileSync(config.bodiesFile, 'utf8')) as string[];
const result =
  config.mode === 'paced' ? await pacedMode(config, bodies) : await autocannonMode(config, bodies);
process.stdout.write(`${JSON.stringify(result)}\n`);
// Keep-alive sockets or autocannon's timers must not keep the process around.
process.exit(0);
