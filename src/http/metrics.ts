import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';
import type { Handover } from './wire.ts';

export interface HttpMetrics {
  registry: Registry;
  observe(method: string, route: string, status: number, seconds: number): void;
  /** A request answered straight from the socket (src/http/wire.ts). */
  wireRequest(): void;
  /** A connection handed to node:http, and why (src/http/wire.ts). */
  wireHandover(reason: Handover): void;
}

/**
 * One registry per process context (not prom-client's global one), so two app instances in one test
 * process do not collide. `queueDepth` is filled by whoever knows the queues.
 */
export function createMetrics(opts: {
  defaultMetrics: boolean;
  queueDepths?: () => Promise<Record<string, Record<string, number>>>;
}): HttpMetrics {
  const registry = new Registry();
  if (opts.defaultMetrics) collectDefaultMetrics({ register: registry, prefix: 'gatehouse_' });
  const requests = new Counter({
    name: 'gatehouse_http_requests_total',
    help: 'HTTP requests by method, route and status',
    labelNames: ['method', 'route', 'status'] as const,
    registers: [registry],
  });
  const latency = new Histogram({
    name: 'gatehouse_http_request_duration_seconds',
    help: 'HTTP request latency by method, route and status',
    labelNames: ['method', 'route', 'status'] as const,
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
    registers: [registry],
  });
  const wireRequests = new Counter({
    name: 'gatehouse_wire_requests_total',
    help: 'Enforcement requests read and answered straight from the socket rather than by node:http',
    registers: [registry],
  });
  const wireHandovers = new Counter({
    name: 'gatehouse_wire_handovers_total',
    help:
      'Connections handed to node:http: route = not an enforcement request, form = one not written ' +
      'the plain way (chunked, repeated headers, ...), partial = a head that did not come in one read',
    labelNames: ['reason'] as const,
    registers: [registry],
  });
  const handoverChildren: Record<Handover, { inc(): void }> = {
    route: wireHandovers.labels('route'),
    form: wireHandovers.labels('form'),
    partial: wireHandovers.labels('partial'),
  };
  const children = new Map<string, { count: { inc(): void }; latency: { observe(v: number): void } }>();
  const queueDepths = opts.queueDepths;
  if (queueDepths) {
    new Gauge({
      name: 'gatehouse_queue_jobs',
      help: 'BullMQ jobs by queue and state',
      labelNames: ['queue', 'state'] as const,
      registers: [registry],
      async collect() {
        this.reset();
        const depths = await queueDepths();
        for (const [queue, states] of Object.entries(depths)) {
          for (const [state, count] of Object.entries(states)) this.set({ queue, state }, count);
        }
      },
    });
  }
  return {
    registry,
    observe(method, route, status, seconds) {
      // The labelled children are looked up once per combination: hashing the labels on every
      // observation is a measurable share of an enforcement call.
      const id = `${method} ${route} ${status}`;
      let child = children.get(id);
      if (!child) {
        const labels = { method, route, status: String(status) };
        child = { count: requests.labels(labels), latency: latency.labels(labels) };
        // Routes are templates and methods and statuses few; the cap only guards against surprises.
        if (children.size >= 1_000) children.clear();
        children.set(id, child);
      }
      child.count.inc();
      child.latency.observe(seconds);
    },
    wireRequest: () => wireRequests.inc(),
    wireHandover: (reason) => handoverChildren[reason].inc(),
  };
}
