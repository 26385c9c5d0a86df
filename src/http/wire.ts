import { type Server, STATUS_CODES } from 'node:http';
import type { Socket } from 'node:net';
import { ProblemError } from './problem.ts';

// The gateway's connections, read and answered here rather than by node:http.
//
// Why: a gateway asks on every API call over a few long-lived keep-alive connections, and on
// node:http a good part of every decision's CPU is the server's own: the parser's callbacks, the
// IncomingMessage and ServerResponse objects with their streams, writeHead's header handling. In
// `npm run bench:enforce` (every key cached, the same rounds) a decision cost 196 µs of server CPU
// on node:http and 152 µs read here. So each new connection is looked at here first: a request
// for a route this path serves (the enforcement routes) is read from the socket, answered, and
// the connection waits for its next request. Anything else goes to node:http with every byte it
// has sent, and stays there for the rest of its life.
//
// Only a request written the plain way is read here, and any doubt sends the connection to
// node:http, which then answers (or refuses) it exactly as it answers every other request. A
// request is read here only when
//   - its whole head came in one read (a head split over reads, trickled or not, goes to node:http
//     and its timeouts), ends in CRLF CRLF within 16 KiB, and uses CRLF line ends only;
//   - its request line is `GET` or `POST`, SP, a target of visible ASCII, SP, `HTTP/1.1`, for a
//     route this path serves (HEAD, whose answer has no body, and every other method go over);
//   - every header line is `token ":" OWS value OWS`, with no control character but tab in the
//     value (no obs-fold, no bare CR or LF, no NUL), no header name comes twice, and there are at
//     most 100 of them;
//   - it has a Host and no Transfer-Encoding, Expect or Upgrade, a Connection header that does not
//     ask for an upgrade, and a Content-Length of digits within the body limit (none means none).
// So the body's length is never open to two readings (no chunked framing, no conflicting lengths):
// nothing a proxy in front could frame differently gets in. Requests on one connection are answered
// in order, one at a time; bytes that come while one is being decided wait (and reading pauses past
// a bound). Timeouts follow the server's: headersTimeout until the first request, keepAliveTimeout
// between requests and while a body is coming, requestTimeout for a whole request.

/** A request read from the socket; header names are lower-case, one value each. */
export interface WireRequest {
  readonly method: string;
  /** The request target as sent: path and query. */
  readonly url: string;
  readonly headers: Readonly<Record<string, string>>;
  readonly body: string;
  readonly remoteAddress: string | undefined;
}

/** An answer: Content-Length, Date and the connection headers are added by whoever writes it. */
export interface Answer {
  status: number;
  headers: Record<string, string | number>;
  body: string;
}

export interface WireRoutes {
  /** Whether this path answers requests with this method and target. */
  accepts(method: string, url: string): boolean;
  /** Should not reject; if it does, the client gets a 500 and the connection is closed. */
  answer(request: WireRequest): Promise<Answer>;
  /** Bodies above this many bytes go to node:http. */
  maxBody: number;
  /** Told each time a connection goes to node:http, and why. */
  onHandover?(reason: Handover): void;
}

const MAX_HEAD = 16 * 1024; // node:http's default --max-http-header-size
/** A gateway sends a few dozen; node:http reads at most 2,000 (maxHeadersCount) and drops the rest. */
const MAX_HEADERS = 100;
const HEAD_END = Buffer.from('\r\n\r\n');
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const BAD_TARGET = /[^\x21-\x7e]/;
/** tchar (RFC 9110), by latin1 code. */
const NAME_CHAR = new Uint8Array(256);
for (const c of "!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
  NAME_CHAR[c.charCodeAt(0)] = 1;
/** field-content: HTAB, SP, VCHAR, obs-text; no other control character, no DEL. */
const VALUE_CHAR = new Uint8Array(256);
VALUE_CHAR[0x09] = 1;
VALUE_CHAR.fill(1, 0x20, 0x7f);
VALUE_CHAR.fill(1, 0x80, 0x100);
/** What is written must be plain ASCII: an answer's header values come from policy and code. */
const BAD_OUT_VALUE = /[^\t\x20-\x7e]/;

/** Whether a header value can go out as it is (tab and visible ASCII only). */
export const sendableHeaderValue = (value: string): boolean => !BAD_OUT_VALUE.test(value);
const LENGTH = /^[0-9]{1,9}$/;

interface Head {
  method: string;
  url: string;
  headers: Record<string, string>;
  length: number;
  close: boolean;
}

/**
 * Why a request goes to node:http: `route`, it is not for a route this path serves; `form`, it is,
 * but not written the plain way; `partial`, its head did not come in one read.
 */
export type Handover = 'route' | 'form' | 'partial';

/** The head as this path reads it, or why node:http should have the request. */
export function parseHead(
  text: string,
  accepts: (method: string, url: string) => boolean,
  maxBody: number,
): Head | 'route' | 'form' {
  const lineEnd = text.indexOf('\r\n');
  const lineLength = lineEnd === -1 ? text.length : lineEnd;
  const sp1 = text.indexOf(' ');
  const sp2 = sp1 === -1 ? -1 : text.indexOf(' ', sp1 + 1);
  if (sp1 <= 0 || sp2 === -1 || sp2 > lineLength) return 'form';
  const method = text.slice(0, sp1);
  const url = text.slice(sp1 + 1, sp2);
  if (!accepts(method, url)) return 'route';
  if (method !== 'POST' && method !== 'GET') return 'form';
  if (lineLength - sp2 !== 9 || !text.startsWith('HTTP/1.1', sp2 + 1)) return 'form';
  if (url.length === 0 || BAD_TARGET.test(url)) return 'form';
  if (lineEnd === -1) return 'form'; // no header lines, so no Host

  // One pass over the header lines, by character class: `name ":" OWS value OWS`, CRLF between
  // lines. A plain object, not a null-prototype one (those are dictionaries to V8, slower to
  // fill): a name an object already has (__proto__, constructor, ...) reads as a repeat and goes
  // to node:http.
  const headers: Record<string, string> = {};
  const n = text.length;
  let i = lineEnd + 2;
  let count = 0;
  while (i < n) {
    if (++count > MAX_HEADERS) return 'form';
    const start = i;
    while (i < n && NAME_CHAR[text.charCodeAt(i)] === 1) i++;
    if (i === start || i === n || text.charCodeAt(i) !== 0x3a) return 'form';
    const nameEnd = i++;
    while (i < n && isOws(text.charCodeAt(i))) i++;
    const from = i;
    let to = i;
    for (; i < n; i++) {
      const c = text.charCodeAt(i);
      if (VALUE_CHAR[c] !== 1) break;
      if (c !== 0x20 && c !== 0x09) to = i + 1;
    }
    if (i < n) {
      // Anything but CRLF here (a bare CR or LF, a control character) is refused.
      if (text.charCodeAt(i) !== 0x0d || text.charCodeAt(i + 1) !== 0x0a) return 'form';
      i += 2;
      if (i === n) return 'form'; // an empty line inside the head
    }
    const key = text.slice(start, nameEnd).toLowerCase();
    if (headers[key] !== undefined) return 'form';
    headers[key] = text.slice(from, to);
  }

  if (headers.host === undefined) return 'form';
  if (
    headers['transfer-encoding'] !== undefined ||
    headers.expect !== undefined ||
    headers.upgrade !== undefined
  )
    return 'form';
  let length = 0;
  const declared = headers['content-length'];
  if (declared !== undefined) {
    if (!LENGTH.test(declared)) return 'form';
    length = Number(declared);
    if (length > maxBody) return 'form';
  }
  let close = false;
  const connection = headers.connection;
  if (connection !== undefined) {
    for (const option of connection.toLowerCase().split(',')) {
      const o = option.trim();
      if (o === 'close') close = true;
      else if (o === 'upgrade') return 'form';
    }
  }
  return { method, url, headers, length, close };
}

const isOws = (c: number) => c === 0x20 || c === 0x09;

/** Why a head that did not come whole goes over: `route` when its request line says so already. */
function partialHandover(buf: Buffer, accepts: (method: string, url: string) => boolean): Handover {
  const lineEnd = buf.indexOf('\r\n');
  if (lineEnd === -1 || lineEnd > MAX_HEAD) return 'partial';
  const [method = '', url = ''] = buf.toString('latin1', 0, lineEnd).split(' ');
  return accepts(method, url) ? 'partial' : 'route';
}

let dateText = '';
let dateUntil = 0;
/** The Date header's value, made once a second. */
function httpDate(now: number): string {
  if (now >= dateUntil) {
    dateText = new Date(now).toUTCString();
    dateUntil = now - (now % 1000) + 1000;
  }
  return dateText;
}

/** The answer as it goes on the wire; throws on a header value that is not plain ASCII. */
function renderAnswer(a: Answer, connection: string): string {
  let head = `HTTP/1.1 ${a.status} ${STATUS_CODES[a.status] ?? 'Unknown'}\r\n`;
  const headers = a.headers;
  for (const name in headers) {
    const value = headers[name];
    const text = typeof value === 'number' ? String(value) : (value as string);
    if (!sendableHeaderValue(text) || !TOKEN.test(name))
      throw new Error(`answer header ${name} is not valid`);
    head += `${name}: ${text}\r\n`;
  }
  return `${head}Content-Length: ${Buffer.byteLength(a.body)}\r\nDate: ${httpDate(Date.now())}\r\n${connection}\r\n${a.body}`;
}

/** The answer when the route itself failed; the connection closes after it. */
export const INTERNAL_ERROR: Answer = {
  status: 500,
  headers: { 'Content-Type': 'application/problem+json; charset=utf-8' },
  body: JSON.stringify(new ProblemError('internal_error').body()),
};

const TIMED_OUT: Answer = { status: 408, headers: {}, body: '' };

/**
 * Puts this path in front of the server's connections. node:http's own connection handling stays as
 * it is for every connection this path hands over (and so do its timeouts, which it tracks for the
 * connections it has). The server's closeIdleConnections and closeAllConnections also close this
 * path's connections.
 */
export function attachWire(server: Server, routes: WireRoutes): void {
  const listeners = server.listeners('connection');
  if (listeners.length !== 1) throw new Error('the HTTP server must have only its own connection listener');
  const nodeConnection = listeners[0] as (socket: Socket) => void;
  server.removeListener('connection', nodeConnection);
  const open = new Set<WireConnection>();
  const context: WireContext = {
    server,
    routes,
    open,
    handOff: (socket) => nodeConnection.call(server, socket),
  };
  server.on('connection', (socket: Socket) => {
    open.add(new WireConnection(context, socket));
  });
  const closeIdle = server.closeIdleConnections.bind(server);
  const closeAll = server.closeAllConnections.bind(server);
  // node:http's close() calls closeIdleConnections() too, so these cover a plain close() as well.
  server.closeIdleConnections = () => {
    closeIdle();
    for (const c of open) c.closeIfIdle();
  };
  server.closeAllConnections = () => {
    closeAll();
    for (const c of open) c.destroy();
  };
}

interface WireContext {
  server: Server;
  routes: WireRoutes;
  open: Set<WireConnection>;
  handOff(socket: Socket): void;
}

class WireConnection {
  /** Bytes read and not yet used: what came while a request was being decided. */
  private queued: Buffer[] = [];
  private queuedBytes = 0;
  /** A request whose body is still coming. */
  private receiving: { head: Head; parts: Buffer[]; missing: number; since: number } | null = null;
  private busy = false;
  /** An answer is waiting in the socket's buffer for the client to read what came before. */
  private draining = false;
  private paused = false;
  /** No more requests are read: the connection closes once its answer is written. */
  private last = false;
  /** Whether a first request has been answered (the timeout switches to keepAliveTimeout). */
  private answered = false;
  private readonly onData = (chunk: Buffer) => this.data(chunk);
  private readonly onEnd = () => this.ended();
  private readonly onTimeout = () => this.timedOut();
  private readonly onError = () => this.socket.destroy();
  private readonly onClose = () => this.ctx.open.delete(this);
  private readonly onDrain = () => {
    this.draining = false;
    this.next();
  };

  constructor(
    private readonly ctx: WireContext,
    private readonly socket: Socket,
  ) {
    socket.on('data', this.onData);
    socket.on('end', this.onEnd);
    socket.on('timeout', this.onTimeout);
    socket.on('error', this.onError);
    socket.on('close', this.onClose);
    socket.setTimeout(ctx.server.headersTimeout || ctx.server.keepAliveTimeout);
  }

  closeIfIdle(): void {
    if (this.busy || this.receiving !== null) {
      this.last = true;
    } else if (this.draining) {
      // An answer the client has yet to read: it goes out first.
      this.last = true;
      this.socket.end();
    } else {
      this.socket.destroy();
    }
  }

  destroy(): void {
    this.socket.destroy();
  }

  private data(chunk: Buffer): void {
    const r = this.receiving;
    if (r !== null) {
      this.bodyData(r, chunk);
      return;
    }
    // After a request that closes the connection nothing more is read.
    if (this.last) return;
    if (this.busy || this.draining) this.queue(chunk);
    else this.read(chunk);
  }

  private queue(chunk: Buffer): void {
    this.queued.push(chunk);
    this.queuedBytes += chunk.length;
    if (!this.paused && this.queuedBytes > MAX_HEAD + this.ctx.routes.maxBody) {
      this.paused = true;
      this.socket.pause();
    }
  }

  /** The start of a request (and possibly more): read it here, or hand the connection over. */
  private read(buf: Buffer): void {
    const routes = this.ctx.routes;
    const end = buf.indexOf(HEAD_END);
    if (end === -1 || end > MAX_HEAD) {
      this.handOff(buf, partialHandover(buf, routes.accepts));
      return;
    }
    const head = parseHead(buf.toString('latin1', 0, end), routes.accepts, routes.maxBody);
    if (typeof head === 'string') {
      this.handOff(buf, head);
      return;
    }
    const bodyStart = end + 4;
    const bodyEnd = bodyStart + head.length;
    if (buf.length >= bodyEnd) {
      if (buf.length > bodyEnd) this.queue(buf.subarray(bodyEnd));
      this.dispatch(head, buf.toString('utf8', bodyStart, bodyEnd));
      return;
    }
    const part = buf.subarray(bodyStart);
    this.receiving = { head, parts: [part], missing: head.length - part.length, since: Date.now() };
    if (!this.answered) this.socket.setTimeout(this.ctx.server.keepAliveTimeout);
  }

  private bodyData(r: NonNullable<WireConnection['receiving']>, chunk: Buffer): void {
    const limit = this.ctx.server.requestTimeout;
    if (limit > 0 && Date.now() - r.since > limit) {
      this.timedOut();
      return;
    }
    if (chunk.length < r.missing) {
      r.parts.push(chunk);
      r.missing -= chunk.length;
      return;
    }
    r.parts.push(chunk.subarray(0, r.missing));
    if (chunk.length > r.missing) this.queue(chunk.subarray(r.missing));
    this.receiving = null;
    this.dispatch(r.head, Buffer.concat(r.parts).toString('utf8'));
  }

  private dispatch(head: Head, body: string): void {
    this.busy = true;
    if (head.close) this.last = true;
    this.ctx.routes
      .answer({
        method: head.method,
        url: head.url,
        headers: head.headers,
        body,
        remoteAddress: this.socket.remoteAddress,
      })
      .then(
        (answer) => this.respond(answer, false),
        () => this.respond(INTERNAL_ERROR, true),
      );
  }

  private respond(answer: Answer, fatal: boolean): void {
    this.busy = false;
    const socket = this.socket;
    if (socket.destroyed) return;
    // A server that has stopped listening is draining: each answer closes its connection.
    if (fatal || !this.ctx.server.listening) this.last = true;
    const connection = this.last
      ? 'Connection: close\r\n'
      : `Connection: keep-alive\r\nKeep-Alive: timeout=${Math.floor(this.ctx.server.keepAliveTimeout / 1000)}\r\n`;
    let text: string;
    try {
      text = renderAnswer(answer, connection);
    } catch {
      this.last = true;
      text = renderAnswer(INTERNAL_ERROR, 'Connection: close\r\n');
    }
    const flushed = socket.write(text);
    if (this.last) {
      socket.end();
      return;
    }
    if (!this.answered) {
      this.answered = true;
      socket.setTimeout(this.ctx.server.keepAliveTimeout);
    }
    if (!flushed) {
      // A client that sends requests and does not read the answers: stop reading it until it
      // does, so that answers never pile up in memory (node:http does the same).
      this.draining = true;
      if (!this.paused) {
        this.paused = true;
        socket.pause();
      }
      socket.once('drain', this.onDrain);
      return;
    }
    this.next();
  }

  /** Goes on with what came meanwhile, and reads from the socket again once nothing waits. */
  private next(): void {
    if (this.busy || this.draining) return;
    if (this.queuedBytes > 0) {
      const buf = this.queued.length === 1 ? this.queued[0]! : Buffer.concat(this.queued);
      this.queued = [];
      this.queuedBytes = 0;
      this.read(buf);
    }
    if (this.paused && !this.busy) {
      this.paused = false;
      this.socket.resume();
    }
  }

  private ended(): void {
    // The client has sent all it will: answer what is in hand, then close.
    this.last = true;
    if (this.receiving !== null) this.socket.destroy();
    else if (!this.busy) this.socket.end();
  }

  private timedOut(): void {
    if (this.busy) return; // the answer is on its way; the deadline bounds it
    if (this.receiving !== null) {
      this.receiving = null;
      this.last = true;
      this.socket.end(renderAnswer(TIMED_OUT, 'Connection: close\r\n'));
      return;
    }
    this.socket.destroy();
  }

  /** node:http takes the connection from here on, starting with `buf`. */
  private handOff(buf: Buffer, reason: Handover): void {
    this.ctx.routes.onHandover?.(reason);
    const socket = this.socket;
    socket.removeListener('data', this.onData);
    socket.removeListener('end', this.onEnd);
    socket.removeListener('timeout', this.onTimeout);
    socket.removeListener('error', this.onError);
    socket.removeListener('close', this.onClose);
    socket.removeListener('drain', this.onDrain);
    socket.setTimeout(0);
    this.ctx.open.delete(this);
    socket.unshift(buf);
    if (this.paused) {
      this.paused = false;
      socket.resume();
    }
    this.ctx.handOff(socket);
  }
}
