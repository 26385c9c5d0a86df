import type { EventEmitter } from 'node:events';
import { createRequire } from 'node:module';

// autocannon ships no types and @types/autocannon is not a dependency, so the part of its
// programmatic API the benchmarks use is typed here (from its README and lib/run.js, version 9).

/** The request autocannon is about to encode; setupRequest may change and must return it. */
export interface BuiltRequest {
  method: string;
  path: string;
  headers: Record<string, string>;
  body?: string | Buffer;
}

export interface AutocannonRequest {
  method?: string;
  path?: string;
  headers?: Record<string, string>;
  body?: string | Buffer;
  /** Called for every request (not only the first), so each one can carry fresh data. */
  setupRequest?: (request: BuiltRequest, context: Record<string, unknown>) => BuiltRequest | null;
  onResponse?: (
    status: number,
    body: string,
    context: Record<string, unknown>,
    headers: Record<string, string | string[]>,
  ) => void;
}

export interface AutocannonOptions {
  url: string;
  connections: number;
  /** Seconds. */
  duration: number;
  pipelining?: number;
  /** Seconds before a request counts as timed out. */
  timeout?: number;
  method?: string;
  headers?: Record<string, string>;
  requests?: AutocannonRequest[];
}

export interface Histogram {
  average: number;
  mean: number;
  stddev: number;
  min: number;
  max: number;
  total: number;
  p50: number;
  p75: number;
  p90: number;
  p97_5: number;
  p99: number;
  p99_9: number;
}

export interface AutocannonResult {
  /** Seconds actually run. */
  duration: number;
  errors: number;
  timeouts: number;
  non2xx: number;
  '1xx': number;
  '2xx': number;
  '3xx': number;
  '4xx': number;
  '5xx': number;
  statusCodeStats: Record<string, { count: number }>;
  /** Milliseconds, over every response (2xx and others alike). */
  latency: Histogram & { totalCount: number };
  /** Responses per one-second sample; `sent` counts requests written. */
  requests: Histogram & { sent: number };
}

interface AutocannonInstance extends EventEmitter {
  stop(): void;
}

type Autocannon = (
  opts: AutocannonOptions,
  done: (err: Error | null, result: AutocannonResult) => void,
) => AutocannonInstance;

const autocannon = createRequire(import.meta.url)('autocannon') as Autocannon;

/**
 * One autocannon run in this process. An abort stops it early; the promise still resolves with
 * what was measured so far, and the caller decides whether that counts.
 */
export function runAutocannon(opts: AutocannonOptions, signal?: AbortSignal): Promise<AutocannonResult> {
  return new Promise((resolve, reject) => {
    const instance = autocannon(opts, (err, result) => {
      signal?.removeEventListener('abort', stop);
      if (err) reject(err);
      else resolve(result);
    });
    const stop = () => instance.stop();
    if (signal?.aborted) stop();
    else signal?.addEventListener('abort', stop, { once: true });
  });
}
