import { isIP, connect as netConnect, type Socket } from 'node:net';
import { type ConnectionOptions, connect as tlsConnect } from 'node:tls';
import { Fifo } from '../lib/fifo.ts';

// A small pipelined Redis client for the enforcement decision, the one call Gatehouse makes on
// every API request of every customer.
//
// Why not ioredis here: measured under load on the enforcement route, ioredis spent a quarter of
// the process's CPU on its own bookkeeping for the one EVALSHA a decision sends (a Command object
// with per-argument conversion, a flatten of ~130 arguments, a promise chain per command, a
// per-command write). This client does the least that one hot, well-understood command needs:
// it encodes each command once, as one string, sends the commands of one turn of the event loop in
// one write, and matches replies to callers in order (RESP2, as Redis answers without HELLO).
// Everything else Gatehouse does with Redis (queues, pub/sub, signup, keys) stays on ioredis.
//
// What it guarantees, since a gateway must never hang on Gatehouse:
// - A command fails at once while the connection is down (no offline queue) and reconnects in
//   the background with a capped back-off.
// - A command without a reply within `commandTimeoutMs` fails; its reply, if it comes, is skipped.
// - A connection with a reply overdue by `staleMs` is dropped and reopened: a Redis that stopped
//   answering must not collect an ever longer queue.
// - At most `maxPending` commands wait for replies; beyond that a command fails at once.

export type RespValue = string | number | null | RespValue[] | RespError;

/** An error reply from Redis (`-ERR ...`, `-NOSCRIPT ...`). */
export class RespError extends Error {
  override name = 'RespError';
}

export interface RespClientOptions {
  /** redis://[user:password@]host[:port][/db] or rediss:// for TLS. */
  url: string;
  connectTimeoutMs: number;
  commandTimeoutMs: number;
  /** Drop the connection when a reply is this late (default max(1 s, 20 × commandTimeoutMs)). */
  staleMs?: number;
  maxPending?: number;
  /** Extra TLS settings for rediss:// (a private CA, say); certificates are always verified. */
  tls?: Pick<ConnectionOptions, 'ca' | 'cert' | 'key' | 'servername'>;
  /** Connection errors (refused, reset, timed out): for logging; the client reconnects itself. */
  onError?: (err: Error) => void;
}

interface Pending {
  resolve: (value: RespValue) => void;
  reject: (err: Error) => void;
  deadline: number;
  /** Already failed (timed out): its reply, when it comes, is dropped. */
  settled: boolean;
}

const CRLF = '\r\n';

/**
 * Arguments encoded once, for a caller that sends the same run of arguments again and again (the
 * limiter's windows of one dimension, say): a command part that costs one piece, not three per
 * argument.
 */
export class EncodedArgs {
  readonly resp: string;
  constructor(readonly args: readonly string[]) {
    this.resp = encodeParts([args], false);
  }
}

/** A command as the concatenation of its parts (the limiter's head, keys and arguments, say). */
export type CommandParts = ReadonlyArray<readonly string[] | EncodedArgs>;

/** One command in RESP: an array of bulk strings. */
export function encodeCommand(args: readonly string[]): string {
  return encodeParts([args]);
}

// `$<length>\r\n` and `*<count>\r\n` for the lengths and counts most commands have, made once.
const BULK_HEADERS = Array.from({ length: 1_024 }, (_, n) => `$${n}${CRLF}`);
const ARRAY_HEADERS = Array.from({ length: 256 }, (_, n) => `*${n}${CRLF}`);

// The pieces of the command being encoded, reused by every command: a decision's EVALSHA is ~400
// pieces, and a fresh array per flush, grown by copying as it filled, was a fifth of the API
// process's allocation under load (heap-sampling profile at 4,000 decisions/s). Commands of one
// client are much alike in size, so the array is rarely trimmed or grown.
const scratch: string[] = [];

/**
 * One command as one string, joined once from pieces that are mostly the arguments themselves
 * (without the array header when `header` is false: a run of arguments for EncodedArgs).
 * Encoding a decision's EVALSHA (~130 arguments) in a micro-benchmark on a 2-core CI machine:
 * piece-by-piece concatenation ~40-50 µs, and most of the request's garbage (a cons string per
 * piece); each piece written into a Buffer ~70 µs (a native call per piece); pieces joined once
 * ~11-16 µs.
 */
export function encodeParts(parts: CommandParts, header = true): string {
  let n = 0;
  if (header) {
    let count = 0;
    for (const part of parts) count += part instanceof EncodedArgs ? part.args.length : part.length;
    scratch[n++] = ARRAY_HEADERS[count] ?? `*${count}${CRLF}`;
  }
  for (const part of parts) {
    if (part instanceof EncodedArgs) {
      scratch[n++] = part.resp;
      continue;
    }
    for (const arg of part) {
      const bytes = Buffer.byteLength(arg);
      scratch[n++] = BULK_HEADERS[bytes] ?? `$${bytes}${CRLF}`;
      scratch[n++] = arg;
      scratch[n++] = CRLF;
    }
  }
  if (scratch.length !== n) scratch.length = n;
  return scratch.join('');
}

/** Where the last `readInteger` line ended (its CR), or -1 when the line was incomplete. */
let lineEnd = -1;

/**
 * The integer on a header line (after its type byte), read from the bytes: a script's reply is an
 * array of ~30 integers, and a string per line would be most of the parsing cost.
 */
function readInteger(buf: Buffer, at: number): number {
  let i = at;
  const negative = buf[i] === 0x2d;
  if (negative) i++;
  let value = 0;
  for (; i < buf.length; i++) {
    const c = buf[i]!;
    if (c === 0x0d) {
      if (i === at + (negative ? 1 : 0)) break;
      if (i + 1 === buf.length) {
        lineEnd = -1;
        return 0;
      }
      if (buf[i + 1] !== 0x0a) break;
      lineEnd = i;
      return negative ? -value : value;
    }
    if (c < 0x30 || c > 0x39) break;
    value = value * 10 + (c - 0x30);
  }
  if (i === buf.length) {
    lineEnd = -1;
    return 0;
  }
  throw new Error('malformed integer in a Redis reply');
}

/** Where the last `parseValue` ended; -1 when the buffer did not hold the whole value. */
let valueEnd = -1;

/** One RESP2 value at `at`, leaving its end in `valueEnd` (no result object per array item). */
function parseValue(buf: Buffer, at: number): RespValue {
  valueEnd = -1;
  if (at >= buf.length) return null;
  const type = buf[at];
  switch (type) {
    case 0x3a: {
      // :
      const value = readInteger(buf, at + 1);
      if (lineEnd !== -1) valueEnd = lineEnd + 2;
      return value;
    }
    case 0x24: {
      // $
      const length = readInteger(buf, at + 1);
      if (lineEnd === -1) return null;
      const next = lineEnd + 2;
      if (length < 0) {
        valueEnd = next;
        return null;
      }
      if (next + length + 2 > buf.length) return null;
      valueEnd = next + length + 2;
      return buf.toString('utf8', next, next + length);
    }
    case 0x2a: {
      // *
      const count = readInteger(buf, at + 1);
      if (lineEnd === -1) return null;
      let end = lineEnd + 2;
      if (count < 0) {
        valueEnd = end;
        return null;
      }
      const items: RespValue[] = new Array(count);
      for (let i = 0; i < count; i++) {
        items[i] = parseValue(buf, end);
        if (valueEnd === -1) return null;
        end = valueEnd;
      }
      valueEnd = end;
      return items;
    }
    case 0x2b:
    case 0x2d: {
      // + and -
      const crlf = buf.indexOf(CRLF, at + 1, 'latin1');
      if (crlf === -1) return null;
      const text = buf.toString('utf8', at + 1, crlf);
      valueEnd = crlf + 2;
      return type === 0x2b ? text : new RespError(text);
    }
    default:
      throw new Error(`unexpected byte 0x${(type ?? 0).toString(16)} in a Redis reply`);
  }
}

/**
 * Parses one RESP2 value starting at `at`; undefined when the buffer does not hold all of it yet.
 */
export function parseReply(buf: Buffer, at: number): { value: RespValue; end: number } | undefined {
  const value = parseValue(buf, at);
  return valueEnd === -1 ? undefined : { value, end: valueEnd };
}

export class RespClient {
  private readonly target: URL;
  private readonly staleMs: number;
  private readonly maxPending: number;
  private socket: Socket | null = null;
  private ready = false;
  private closed = false;
  private attempts = 0;
  private reconnectTimer: NodeJS.Timeout | null = null;
  private sweepTimer: NodeJS.Timeout | null = null;
  /** Waiting for replies, oldest first. */
  private pending = new Fifo<Pending>();
  /** Encoded commands waiting for this turn's write. */
  private outgoing: string[] = [];
  private flushScheduled = false;
  private buffered: Buffer | null = null;
  private firstConnect: { resolve: () => void; reject: (err: Error) => void } | null = null;
  private lastError: Error | null = null;

  constructor(private readonly options: RespClientOptions) {
    this.target = new URL(options.url);
    if (this.target.protocol !== 'redis:' && this.target.protocol !== 'rediss:') {
      throw new Error(`not a Redis URL: ${this.target.protocol}`);
    }
    this.staleMs = options.staleMs ?? Math.max(1_000, 20 * options.commandTimeoutMs);
    this.maxPending = options.maxPending ?? 50_000;
  }

  /** Opens the connection; rejects (without retrying) when the first attempt fails. */
  connect(): Promise<void> {
    if (this.ready) return Promise.resolve();
    return new Promise((resolve, reject) => {
      this.firstConnect = { resolve, reject };
      this.open();
    });
  }

  get isReady(): boolean {
    return this.ready;
  }

  /** Sends one command; resolves with its reply, rejects with a RespError for an error reply. */
  call(args: readonly string[]): Promise<RespValue> {
    return this.callParts([args]);
  }

  /** Sends the command made of `parts` in order, without joining them into one array first. */
  callParts(parts: CommandParts): Promise<RespValue> {
    if (!this.ready) return Promise.reject(new Error('Redis connection is not ready'));
    if (this.pending.size >= this.maxPending) {
      return Promise.reject(new Error(`more than ${this.maxPending} Redis commands waiting for replies`));
    }
    return new Promise((resolve, reject) => this.enqueue(parts, resolve, reject));
  }

  /** Closes the connection; commands still waiting fail. */
  disconnect(): void {
    this.closed = true;
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    this.reconnectTimer = null;
    this.socket?.destroy();
  }

  private enqueue(
    command: CommandParts,
    resolve: Pending['resolve'],
    reject: Pending['reject'],
    deadline = Date.now() + this.options.commandTimeoutMs,
  ): void {
    this.pending.push({
      resolve,
      reject,
      deadline,
      settled: false,
    });
    this.outgoing.push(encodeParts(command));
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      // Everything asked for in this turn of the event loop leaves in one write.
      setImmediate(() => this.flush());
    }
    if (this.sweepTimer === null) this.scheduleSweep();
  }

  private flush(): void {
    this.flushScheduled = false;
    const socket = this.socket;
    const outgoing = this.outgoing;
    if (outgoing.length === 0 || !socket) return;
    this.outgoing = [];
    if (outgoing.length === 1) {
      socket.write(outgoing[0]!);
      return;
    }
    // One writev for the turn: the strings are copied once, into the write, not joined first.
    socket.cork();
    for (const data of outgoing) socket.write(data);
    socket.uncork();
  }

  private open(): void {
    const { hostname, port, protocol, username, password, pathname } = this.target;
    const host = hostname.startsWith('[') ? hostname.slice(1, -1) : hostname;
    const options = { host, port: Number(port || 6379) };
    const socket =
      protocol === 'rediss:'
        ? // SNI carries host names only; for an address the certificate is checked against the IP.
          tlsConnect({ ...(isIP(host) === 0 ? { servername: host } : {}), ...this.options.tls, ...options })
        : netConnect(options);
    this.socket = socket;
    socket.setNoDelay(true);
    socket.setKeepAlive(true, 30_000);
    const timer = setTimeout(
      () => socket.destroy(new Error(`no connection to Redis within ${this.options.connectTimeoutMs} ms`)),
      this.options.connectTimeoutMs,
    );
    timer.unref();
    socket.once(protocol === 'rediss:' ? 'secureConnect' : 'connect', () => {
      // The handshake: credentials, database, and a PING that proves a Redis is answering.
      const handshake: string[][] = [];
      if (password) {
        handshake.push(
          username
            ? ['AUTH', decodeURIComponent(username), decodeURIComponent(password)]
            : ['AUTH', decodeURIComponent(password)],
        );
      }
      const db = pathname.replace(/^\//, '');
      if (db !== '' && db !== '0') handshake.push(['SELECT', db]);
      handshake.push(['PING']);
      let left = handshake.length;
      const fail = (err: Error) => socket.destroy(err);
      // The handshake runs under the connect budget (the timer above), not the command budget: a
      // busy Redis may answer its first PING later than a decision may wait, and a connection that
      // failed for that would fail again at every retry. Nothing else is sent before it completes,
      // so the sweep, which stops at the first entry not yet due, holds nothing up meanwhile.
      for (const command of handshake) {
        this.enqueue(
          [command],
          () => {
            if (--left > 0) return;
            clearTimeout(timer);
            this.ready = true;
            this.attempts = 0;
            this.firstConnect?.resolve();
            this.firstConnect = null;
          },
          fail,
          Number.POSITIVE_INFINITY,
        );
      }
      this.flush();
    });
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('error', (err) => {
      this.lastError = err;
      this.options.onError?.(err);
    });
    socket.once('close', () => {
      clearTimeout(timer);
      this.onClose();
    });
  }

  private onData(chunk: Buffer): void {
    const buf = this.buffered ? Buffer.concat([this.buffered, chunk]) : chunk;
    let at = 0;
    try {
      for (;;) {
        const value = parseValue(buf, at);
        if (valueEnd === -1) break;
        at = valueEnd;
        this.deliver(value);
      }
    } catch (err) {
      // A byte stream we cannot read: nothing after it can be matched to its command either.
      this.socket?.destroy(err as Error);
      return;
    }
    this.buffered = at < buf.length ? buf.subarray(at) : null;
  }

  private deliver(value: RespValue): void {
    const entry = this.pending.shift();
    if (!entry) {
      this.socket?.destroy(new Error('a Redis reply arrived that no command asked for'));
      return;
    }
    if (entry.settled) return;
    entry.settled = true;
    if (value instanceof RespError) entry.reject(value);
    else entry.resolve(value);
  }

  private onClose(): void {
    this.ready = false;
    this.socket = null;
    this.buffered = null;
    this.outgoing = [];
    const waiting = this.pending.drain();
    const gone = new Error('Redis connection closed');
    for (const entry of waiting) {
      if (!entry.settled) {
        entry.settled = true;
        entry.reject(gone);
      }
    }
    if (this.firstConnect) {
      const reason = this.lastError?.message ?? 'connection closed';
      this.firstConnect.reject(new Error(`could not connect to Redis at ${this.target.host}: ${reason}`));
      this.firstConnect = null;
      this.closed = true;
      return;
    }
    if (this.closed) return;
    this.attempts++;
    this.reconnectTimer = setTimeout(
      () => {
        this.reconnectTimer = null;
        if (!this.closed) this.open();
      },
      Math.min(this.attempts * 100, 2_000),
    );
    this.reconnectTimer.unref();
  }

  /**
   * One timer for every command in flight: they wait in order with the same budget, so a sweep
   * only looks at the front of the queue. A command fails up to a quarter of its budget late.
   */
  private scheduleSweep(): void {
    const tick = Math.max(1, Math.ceil(this.options.commandTimeoutMs / 4));
    this.sweepTimer = setTimeout(() => {
      this.sweepTimer = null;
      const now = Date.now();
      const oldest = this.pending.peek();
      if (oldest && now - oldest.deadline + this.options.commandTimeoutMs > this.staleMs) {
        this.socket?.destroy(new Error(`no reply from Redis for ${this.staleMs} ms`));
        return;
      }
      for (const entry of this.pending) {
        if (entry.deadline > now) break;
        if (!entry.settled) {
          entry.settled = true;
          entry.reject(new Error(`no reply from Redis within ${this.options.commandTimeoutMs} ms`));
        }
      }
      if (this.pending.size > 0) this.scheduleSweep();
    }, tick);
    this.sweepTimer.unref();
  }
}
