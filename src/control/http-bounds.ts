// What one client can hold of the control plane's HTTP API (src/control/server.ts): anyone who
// reaches it may connect (reads are open, and `trellis control` listens on 0.0.0.0), so it holds
// at most `maxConnections` connections (past it a newcomer takes the place of the oldest
// connection of the address holding the most, or is closed itself when its own address holds as
// many; counted in
// trellis_control_http_connections_dropped_total and logged at most once per 10 s), a request head
// must arrive within `headersTimeoutMs` and a whole request within `requestTimeoutMs` (node
// answers 408 and closes; a response, such as a live tap's stream, is not limited), and a body is
// read only once its sender is authorized, up to `maxBodyBytes` (readBody). The injector's webhook
// (src/control/injector/) reads its reviews with readBody too.
//
// A body over the bound is answered 413 with `Connection: close` (answerAndClose), and the client
// must be able to read that answer while it is still sending: closing a socket with bytes still
// coming makes the kernel send a reset, which can reach the client (and discard the answer it had
// not read yet) before its own code saw the answer. So the answer goes out whole, the rest of the
// body is read and dropped for a bounded time (LINGER: nginx's lingering close, Apache's
// lingering_close), and the connection is closed once the client stopped sending or that bound ran
// out.
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { Logger } from '../core/log.ts';
import { LogThrottle } from '../core/log-rate-limit.ts';
import { Registry } from '../core/prometheus.ts';
import { ConnectionShare } from './connection-share.ts';

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

/** Caps `server`'s connections, shared fairly among client addresses; the metrics() of what was closed. */
export function boundConnections(server: Server, limits: ControlHttpLimits, log: Logger): () => string {
  let dropped = 0;
  const throttle = new LogThrottle();
  const share = new ConnectionShare(limits.maxConnections, (victim) => {
    dropped++;
    throttle.note((skipped) =>
      log.warn('HTTP API connection closed: too many open', {
        max: limits.maxConnections,
        closed: victim.newcomer ? 'the new one' : 'the oldest of the address holding the most',
        remote: victim.address,
        unloggedBefore: skipped,
      }),
    );
  });
  server.on('connection', (socket: Socket) => share.admit(socket));
  return () => {
    const registry = new Registry();
    registry
      .counter(
        'trellis_control_http_connections_dropped_total',
        'Connections to the HTTP API closed because it held its maximum: the new one, or the oldest of the client address holding the most.',
        [],
      )
      .labels()
      .inc(dropped);
    return registry.render();
  };
}

/**
 * The body of `req`, up to `max` bytes: 'too-large' past it (reading stops, the request is left
 * paused and whole, for answerAndClose), null when the client went away before its end.
 */
export function readBody(req: IncomingMessage, max: number): Promise<Buffer | 'too-large' | null> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const settle = (result: Buffer | 'too-large' | null): void => {
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('close', onClose);
      req.off('error', onClose);
      resolve(result);
    };
    const onData = (chunk: Buffer): void => {
      size += chunk.length;
      if (size <= max) {
        chunks.push(chunk);
        return;
      }
      req.pause();
      settle('too-large');
    };
    const onEnd = (): void => settle(Buffer.concat(chunks));
    const onClose = (): void => settle(null);
    req.on('data', onData);
    req.once('end', onEnd);
    req.once('close', onClose);
    req.once('error', onClose);
  });
}

/** How long, and for how many bytes, a connection refused with answerAndClose still reads its client. */
export interface Linger {
  /** The whole linger. */
  readonly maxMs: number;
  /** The longest silence of the client: it stopped sending. */
  readonly idleMs: number;
  /** The most bytes read and dropped. */
  readonly maxBytes: number;
}

export const LINGER: Linger = { maxMs: 5000, idleMs: 1000, maxBytes: 64 * 1024 * 1024 };

/**
 * Answers `status` with `body` and `Connection: close` to a client that may still be sending its
 * request (a body over the bound): the answer goes out whole at once, what the client still sends
 * is read and dropped until it stops (its body ended, or `linger.idleMs` without a byte), or
 * `linger.maxMs` or `linger.maxBytes` ran out; only then the response ends and node closes the
 * connection, so the client reads the answer instead of a reset.
 */
export function answerAndClose(
  req: IncomingMessage,
  res: ServerResponse,
  status: number,
  headers: Record<string, string>,
  body: string,
  linger: Linger = LINGER,
): void {
  if (res.headersSent || res.destroyed) {
    res.destroy();
    return;
  }
  const text = Buffer.from(body, 'utf8');
  res.writeHead(status, { ...headers, connection: 'close', 'content-length': String(text.length) });
  res.write(text);
  const started = Date.now();
  let dropped = 0;
  let timer: NodeJS.Timeout | null = null;
  let finished = false;
  const finish = (): void => {
    if (finished) return;
    finished = true;
    if (timer !== null) clearTimeout(timer);
    timer = null;
    req.off('data', onData);
    req.off('end', finish);
    req.off('close', finish);
    req.off('error', finish);
    res.end();
  };
  const arm = (): void => {
    if (timer !== null) clearTimeout(timer);
    const left = linger.maxMs - (Date.now() - started);
    timer = left > 0 ? setTimeout(finish, Math.min(linger.idleMs, left)) : null;
    timer?.unref();
    if (timer === null) finish();
  };
  const onData = (chunk: Buffer): void => {
    dropped += chunk.length;
    if (dropped >= linger.maxBytes) finish();
    else arm();
  };
  req.on('data', onData);
  req.once('end', finish);
  req.once('close', finish);
  req.once('error', finish);
  if (req.readableEnded) {
    finish();
    return;
  }
  arm();
  req.resume();
}
