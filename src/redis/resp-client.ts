import { connect as netConnect, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';

// A small pipelined Redis client for the enforcement decision, the one call Gatehouse makes on
// every API request of every customer.
//
// Why not ioredis here: measured under load on the enforcement route, ioredis spent a quarter of
// the process's CPU on its own bookkeeping for the one EVALSHA a decision sends (a Command object
// with per-argument conversion, a flatten of ~130 arguments, a promise chain per command, a
// per-command write). This client does the least that one hot, well-understood command needs:
// it encodes a command into one string, queues the strings written in one turn of the event loop
// and sends them in one write, and matches replies to callers in order (RESP2, as Redis answers
// without HELLO). Everything else Gatehouse does with Redis (queues, pub/sub, signup, keys) stays
// on ioredis.
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
  /** Connection errors (refused, reset, timed out): for logging; the client reconnects itself. */
  onError?: (err: Error) => void;
}

interface Pending {
  resolve: (value: RespValue) => void;
  reject: (err: Error) => void;
  deadline: number;
  /** Settled by a timeout or an internal command: its reply, when it comes, is dropped. */
  settled: boolean;
}

const CRLF = '\r\n';

/** One command in RESP: an array of bulk strings. */
export function encodeCommand(args: readonly string[]): string {
  let out = `*${args.length}${CRLF}`;
  for (const arg of args) out += `$${Buffer.byteLength(arg)}${CRLF}${arg}${CRLF}`;
  return out;
}

/**
 * Parses one RESP2 value starting at `at`; undefined when the buffer does not hold all of it yet.
 */
export function parseReply(buf: Buffer, at: number): { value: RespValue; end: number } | undefined {
  if (at >= buf.length) return undefined;
  const lineEnd = buf.indexOf(CRLF, at + 1, 'latin1');
  if (lineEnd === -1) return undefined;
  const type = buf[at];
  const line = buf.toString('latin1', at + 1, lineEnd);
  const next = lineEnd + 2;
  switch (type) {
    case 0x2b: // +
      return { value: line, end: next };
    case 0x2d: // -
      return { value: new RespError(buf.toString('utf8', at + 1, lineEnd)), end: next };
    case 0x3a: // :
      return { value: Number(line), end: next };
    case 0x24: {
      // $
      const length = Number(line);
      if (length < 0) return { value: null, end: next };
      if (next + length + 2 > buf.length) return undefined;
      return { value: buf.toString('utf8', next, next + length), end: next + length + 2 };
    }
    case 0x2a: {
      // *
      const count = Number(line);
      if (count < 0) return { value: null, end: next };
      const items: RespValue[] = new Array(count);
      let end = next;
      for (let i = 0; i < count; i++) {
        const item = parseReply(buf, end);
        if (item === undefined) return undefined;
        items[i] = item.value;
        end = item.end;
      }
      return { value: items, end };
    }
    default:
      throw new Error(`unexpected byte 0x${(type ?? 0).toString(16)} in a Redis reply`);
  }
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
  /** Waiting for replies, oldest first, from `head` on. */
  private pending: Pending[] = [];
  private head = 0;
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
    if (!this.ready) return Promise.reject(new Error('Redis connection is not ready'));
    if (this.pending.length - this.head >= this.maxPending) {
      return Promise.reject(new Error(`more than ${this.maxPending} Redis commands waiting for replies`));
    }
    return new Promise((resolve, reject) => this.enqueue(encodeCommand(args), resolve, reject));
  }

  /** Closes the connection; commands still waiting fail. */
  disconnect(): void {
    this.closed = true;
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    this.reconnectTimer = null;
    this.socket?.destroy();
  }

  private enqueue(command: string, resolve: Pending['resolve'], reject: Pending['reject']): void {
    this.pending.push({
      resolve,
      reject,
      deadline: Date.now() + this.options.commandTimeoutMs,
      settled: false,
    });
    this.outgoing.push(command);
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      // Everything asked for in this turn of the event loop leaves in one write.
      setImmediate(() => this.flush());
    }
    if (this.sweepTimer === null) this.scheduleSweep();
  }

  private flush(): void {
    this.flushScheduled = false;
    if (this.outgoing.length === 0 || !this.socket) return;
    const data = this.outgoing.length === 1 ? this.outgoing[0]! : this.outgoing.join('');
    this.outgoing = [];
    this.socket.write(data);
  }

  private open(): void {
    const { hostname, port, protocol, username, password, pathname } = this.target;
    const host = hostname.startsWith('[') ? hostname.slice(1, -1) : hostname;
    const options = { host, port: Number(port || 6379) };
    const socket =
      protocol === 'rediss:' ? tlsConnect({ ...options, servername: host }) : netConnect(options);
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
      for (const command of handshake) {
        this.enqueue(
          encodeCommand(command),
          () => {
            if (--left > 0) return;
            clearTimeout(timer);
            this.ready = true;
            this.attempts = 0;
            this.firstConnect?.resolve();
            this.firstConnect = null;
          },
          fail,
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
    let buf = this.buffered ? Buffer.concat([this.buffered, chunk]) : chunk;
    let at = 0;
    try {
      for (;;) {
        const reply = parseReply(buf, at);
        if (reply === undefined) break;
        at = reply.end;
        this.deliver(reply.value);
      }
    } catch (err) {
      // A byte stream we cannot read: nothing after it can be matched to its command either.
      this.socket?.destroy(err as Error);
      return;
    }
    buf = at === buf.length ? Buffer.alloc(0) : buf.subarray(at);
    this.buffered = buf.length > 0 ? buf : null;
  }

  private deliver(value: RespValue): void {
    const entry = this.pending[this.head];
    if (!entry) {
      this.socket?.destroy(new Error('a Redis reply arrived that no command asked for'));
      return;
    }
    this.pending[this.head++] = undefined as unknown as Pending;
    if (this.head > 1024 && this.head * 2 > this.pending.length) {
      this.pending = this.pending.slice(this.head);
      this.head = 0;
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
    const waiting = this.pending.slice(this.head);
    this.pending = [];
    this.head = 0;
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
      const oldest = this.pending[this.head];
      if (oldest && now - oldest.deadline + this.options.commandTimeoutMs > this.staleMs) {
        this.socket?.destroy(new Error(`no reply from Redis for ${this.staleMs} ms`));
        return;
      }
      for (let i = this.head; i < this.pending.length; i++) {
        const entry = this.pending[i]!;
        if (entry.deadline > now) break;
        if (!entry.settled) {
          entry.settled = true;
          entry.reject(new Error(`no reply from Redis within ${this.options.commandTimeoutMs} ms`));
        }
      }
      if (this.pending.length > this.head) this.scheduleSweep();
    }, tick);
    this.sweepTimer.unref();
  }
}
