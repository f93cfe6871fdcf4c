// What one client can hold of the control plane's HTTP API (src/control/server.ts): anyone who
// reaches it may connect (reads are open, and `trellis control` listens on 0.0.0.0), so it holds
// at most `maxConnections` connections (more are closed at once, counted in
// trellis_control_http_connections_dropped_total and logged at most once per 10 s), a request head
// must arrive within `headersTimeoutMs` and a whole request within `requestTimeoutMs` (node
// answers 408 and closes; a response, such as a live tap's stream, is not limited), and a body is
// read only once its sender is authorized, up to `maxBodyBytes` (readBody).
import type { IncomingMessage, Server } from 'node:http';
import type { Logger } from '../core/log.ts';
import { LogThrottle } from '../core/log-rate-limit.ts';
import { Registry } from '../core/prometheus.ts';

export interface ControlHttpLimits {
  /** Connections held at once; more are closed as they arrive. */
  readonly maxConnections: number;
  /** From a connection's (or a keep-alive request's) first byte to the end of its head. */
  readonly headersTimeoutMs: number;
  /** From a request's first byte to the end of its body. */
  readonly requestTimeoutMs: number;
  /** How often node looks for connections past those deadlines. */
  readonly checkIntervalMs: number;
  /** The largest request body read (413 above). */
  readonly maxBodyBytes: number;
}

export const DEFAULT_CONTROL_HTTP_LIMITS: ControlHttpLimits = {
  // The CLI, a dashboard relay (32 at a time), Prometheus and the proxies' trace exports use a few each.
  maxConnections: 512,
  headersTimeoutMs: 10_000,
  requestTimeoutMs: 30_000,
  checkIntervalMs: 1000,
  maxBodyBytes: 1 << 20,
};

/** The options of node's createServer that carry the deadlines. */
export function serverDeadlines(limits: ControlHttpLimits): {
  headersTimeout: number;
  requestTimeout: number;
  connectionsCheckingInterval: number;
} {
  return {
    headersTimeout: limits.headersTimeoutMs,
    requestTimeout: limits.requestTimeoutMs,
    connectionsCheckingInterval: limits.checkIntervalMs,
  };
}

/** Caps `server`'s connections; the metrics() of what was dropped. */
export function boundConnections(server: Server, limits: ControlHttpLimits, log: Logger): () => string {
  server.maxConnections = limits.maxConnections;
  let dropped = 0;
  const throttle = new LogThrottle();
  server.on('drop', (data?: { remoteAddress?: string }) => {
    dropped++;
    throttle.note((skipped) =>
      log.warn('HTTP API connection refused: too many open', {
        max: limits.maxConnections,
        remote: data?.remoteAddress,
        unloggedBefore: skipped,
      }),
    );
  });
  return () => {
    const registry = new Registry();
    registry
      .counter(
        'trellis_control_http_connections_dropped_total',
        'Connections to the HTTP API closed as they arrived because it held its maximum.',
        [],
      )
      .labels()
      .inc(dropped);
    return registry.render();
  };
}

/**
 * The body of `req`, up to `max` bytes: 'too-large' past it (the rest is not read), null when the
 * client went away before its end.
 */
export async function readBody(req: IncomingMessage, max: number): Promise<Buffer | 'too-large' | null> {
  const chunks: Buffer[] = [];
  let size = 0;
  try {
    for await (const chunk of req as AsyncIterable<Buffer>) {
      size += chunk.length;
      if (size > max) return 'too-large';
      chunks.push(chunk);
    }
  } catch {
    return null;
  }
  return Buffer.concat(chunks);
}
