import { createServer, type Server, type ServerResponse } from 'node:http';
import type { Context } from '../context.ts';
import { createEnforceRoutes, MAX_BODY, nodeHandler } from '../enforce/http.ts';
import { createApp } from './app.ts';
import { attachWire } from './wire.ts';

/**
 * The HTTP server. The enforcement routes are answered straight from the socket (src/http/wire.ts)
 * on connections that send them the plain way, and by their node:http handler on any other
 * connection (src/enforce/http.ts has why not Express); everything else by the Express app.
 */
export interface GatehouseServer extends Server {
  /** Resolves once every handler has answered, including those whose client already hung up. */
  drained(): Promise<void>;
}

export function createHttpServer(ctx: Context): GatehouseServer {
  const app = createApp(ctx);
  const metrics = ctx.config.METRICS_ENABLED ? ctx.metrics : null;
  const routes = createEnforceRoutes({
    enforce: ctx.enforce,
    tokens: ctx.tokens,
    metrics,
    logger: ctx.logger,
    trustedProxies: ctx.trustedProxies,
    deadlineMs: ctx.config.ENFORCE_DEADLINE_MS,
    failMode: () => ctx.policy.enforcement.failMode,
  });
  const fast = nodeHandler(routes);
  // A client that hangs up mid-request closes its socket, but its handler goes on writing to
  // PostgreSQL and Redis; a handler is done when it ends its response, socket or no socket.
  let inFlight = 0;
  const track = (res: ServerResponse) => {
    inFlight++;
    const end = res.end.bind(res) as (...args: unknown[]) => ServerResponse;
    let done = false;
    res.end = ((...args: unknown[]) => {
      if (!done) {
        done = true;
        inFlight--;
      }
      return end(...args);
    }) as ServerResponse['end'];
  };
  const server = createServer((req, res) => {
    track(res);
    if (!fast(req, res)) app(req, res);
  }) as GatehouseServer;
  const settled = () => {
    inFlight--;
  };
  if (ctx.config.ENFORCE_WIRE)
    attachWire(server, {
      accepts: routes.accepts,
      maxBody: MAX_BODY,
      answer(request) {
        const answer = routes.answer(request) ?? Promise.reject(new Error('not an enforcement route'));
        inFlight++;
        metrics?.wireRequest();
        answer.then(settled, settled);
        return answer;
      },
      onHandover: metrics ? (reason) => metrics.wireHandover(reason) : undefined,
    });
  server.drained = async () => {
    while (inFlight > 0) await new Promise((r) => setTimeout(r, 20));
  };
  return server;
}
