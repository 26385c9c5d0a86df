import { Agent, request } from 'node:http';

// The simulator's only way into Gatehouse: its public HTTP API, with service tokens narrowed to
// what each caller in a real deployment holds. Answers that reveal a missing or broken part of the
// API are kept as gaps, with the request and the response, for the report.

export type Scope = 'signup' | 'keys' | 'enforce' | 'ingest' | 'admin';

export interface Answer<T = unknown> {
  status: number;
  body: T;
  headers: Headers;
}

export interface Problem {
  code?: string;
  detail?: string;
  reasons?: string[];
  errors?: Array<{ field: string; message: string }>;
}

export interface ApiGap {
  /** `METHOD /path/{id}` */
  endpoint: string;
  status: number;
  code: string | null;
  note: string;
  request: string;
  response: string;
  count: number;
}

const clip = (text: string, max = 700) =>
  text.length > max ? `${text.slice(0, max)}… (${text.length} chars)` : text;

/** The path with ids folded, so one gap is one line however many accounts met it. */
export const pathTemplate = (path: string): string =>
  path.replace(/\b(acc|key|run|clu|tok|rul)_[0-9a-z]+/g, '{$1}').replace(/\?.*$/, '');

export class GatehouseApi {
  private readonly tokens = new Map<Scope, string>();
  private readonly gapList = new Map<string, ApiGap>();
  /** Requests made, by endpoint template. */
  readonly calls = new Map<string, number>();

  constructor(
    readonly url: string,
    adminToken: string,
  ) {
    this.tokens.set('admin', adminToken);
  }

  /** One narrow service token per caller: signup back end, key issuance, gateway, log import. */
  async setUpTokens(): Promise<void> {
    for (const scope of ['signup', 'keys', 'enforce', 'ingest'] as const) {
      const res = await this.call<{ token?: string }>('admin', 'POST', '/v1/tokens', {
        name: `simulator ${scope}`,
        scopes: [scope],
      });
      if (res.status === 201 && res.body.token) this.tokens.set(scope, res.body.token);
      else
        this.gap(
          'POST',
          '/v1/tokens',
          { scopes: [scope] },
          res,
          'could not create a scoped token; using the admin token',
        );
    }
  }

  /**
   * One request. Only requests that are safe to repeat (reads, and writes deduplicated by the
   * caller's ids) are retried; a signup or a gateway call is never sent twice.
   */
  async call<T = unknown>(
    scope: Scope,
    method: string,
    path: string,
    body?: unknown,
    opts: { timeoutMs?: number; retry?: boolean } = {},
  ): Promise<Answer<T>> {
    const token = this.tokens.get(scope) ?? this.tokens.get('admin');
    const headers: Record<string, string> = { authorization: `Bearer ${token}` };
    const payload = body === undefined ? undefined : JSON.stringify(body);
    if (payload !== undefined) {
      headers['content-type'] = 'application/json';
      headers['content-length'] = String(Buffer.byteLength(payload));
    }
    const endpoint = `${method} ${pathTemplate(path)}`;
    this.calls.set(endpoint, (this.calls.get(endpoint) ?? 0) + 1);
    const retry = opts.retry ?? method === 'GET';
    for (let attempt = 0; ; attempt++) {
      try {
        const res = await send(new URL(path, this.url), method, headers, payload, opts.timeoutMs ?? 60_000);
        let parsed: unknown = res.text;
        if (res.text && /json/.test(res.headers.get('content-type') ?? '')) {
          try {
            parsed = JSON.parse(res.text);
          } catch {
            parsed = res.text;
          }
        }
        // A store briefly unavailable is worth a second try; a refusal is an answer.
        if (retry && res.status === 503 && attempt < 2) {
          await new Promise((r) => setTimeout(r, 500 * (attempt + 1)));
          continue;
        }
        return { status: res.status, body: parsed as T, headers: res.headers };
      } catch (err) {
        if (!retry || attempt >= 2) {
          return {
            status: 0,
            body: { code: 'network_error', detail: (err as Error).message } as T,
            headers: new Headers(),
          };
        }
        await new Promise((r) => setTimeout(r, 300 * (attempt + 1)));
      }
    }
  }

  /** Notes an answer the simulator could not use, once per endpoint, status and code. */
  gap(method: string, path: string, request: unknown, answer: Answer, note: string): void {
    const code =
      typeof answer.body === 'object' && answer.body ? ((answer.body as Problem).code ?? null) : null;
    const endpoint = `${method} ${pathTemplate(path)}`;
    const key = `${endpoint} ${answer.status} ${code}`;
    const known = this.gapList.get(key);
    if (known) {
      known.count++;
      return;
    }
    this.gapList.set(key, {
      endpoint,
      status: answer.status,
      code,
      note,
      request: clip(request === undefined ? '' : JSON.stringify(request)),
      response: clip(typeof answer.body === 'string' ? answer.body : JSON.stringify(answer.body)),
      count: 1,
    });
  }

  gaps(): ApiGap[] {
    return [...this.gapList.values()];
  }
}

export const problemOf = (answer: Answer): Problem =>
  typeof answer.body === 'object' && answer.body !== null ? (answer.body as Problem) : {};

/** Runs `fn` over the items with at most `limit` in flight, in order of start. */
export async function inPool<T>(
  items: readonly T[],
  limit: number,
  fn: (item: T, i: number) => Promise<void>,
): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      await fn(items[i] as T, i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}

// node:http rather than fetch: fetch gives up on any answer slower than 300 s to start, and an
// analysis run asked to `wait` may take longer than that on a large population.
const agent = new Agent({ keepAlive: true, maxSockets: 64 });

function send(
  url: URL,
  method: string,
  headers: Record<string, string>,
  payload: string | undefined,
  timeoutMs: number,
): Promise<{ status: number; headers: Headers; text: string }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method, headers, agent }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('error', reject);
      res.on('end', () => {
        const out = new Headers();
        for (const [k, v] of Object.entries(res.headers)) if (typeof v === 'string') out.set(k, v);
        resolve({ status: res.statusCode ?? 0, headers: out, text: Buffer.concat(chunks).toString('utf8') });
      });
    });
    req.setTimeout(timeoutMs, () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    req.on('error', reject);
    req.end(payload);
  });
}
