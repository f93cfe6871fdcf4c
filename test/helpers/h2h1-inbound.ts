// The inbound end of trellis-h2h1/1 in-process, without TLS: a listener whose connections go to
// MeshH2H1Inbound (as the mTLS termination hands them over, with a fixed peer identity), the real
// HTTP/2-to-HTTP/1 bridge and pool, an HTTP/1 app behind it that counts its connections, and our
// own HTTP/2 client connection to talk to it.
import http from 'node:http';
import net from 'node:net';
import type tls from 'node:tls';
import { once } from 'node:events';
import { silentLogger } from '../../src/core/log.ts';
import type { ProxyErrorReason } from '../../src/proxy/errors.ts';
import { H2Connection } from '../../src/proxy/h2/connection.ts';
import type { H2Limit } from '../../src/proxy/h2/limits.ts';
import type { H2StreamHandler } from '../../src/proxy/h2/stream.ts';
import type { H1Limits } from '../../src/proxy/http/h1-parser.ts';
import { UpstreamPool, type HostLimit } from '../../src/proxy/http/upstream-pool.ts';
import { InboundPolicy } from '../../src/proxy/mesh/inbound-policy.ts';
import { MeshH2H1Inbound } from '../../src/proxy/mesh/inbound-h2h1.ts';
import { PeerMetrics } from '../../src/proxy/telemetry/peer-metrics.ts';
import { Registry } from '../../src/core/prometheus.ts';
import { LATENCY_BUCKETS_SECONDS } from '../../src/proxy/telemetry/metrics.ts';

export const PEER_ID = 'spiffe://cluster.local/ns/default/sa/caller';

export class BridgeMetrics {
  /** Real per-peer series on a registry of their own (telemetry/peer-metrics.ts). */
  readonly peers = new PeerMetrics(new Registry(), LATENCY_BUCKETS_SECONDS);
  started = 0;
  statuses: number[] = [];
  errors: ProxyErrorReason[] = [];
  limits: H2Limit[] = [];
  requestStarted(): void {
    this.started++;
  }
  responseFinished(_d: string, _p: string, status: number): void {
    this.statuses.push(status);
  }
  proxyError(_d: string, reason: ProxyErrorReason): void {
    this.errors.push(reason);
  }
  h2LimitExceeded(_d: string, limit: H2Limit): void {
    this.limits.push(limit);
  }
}

export interface AppRequest {
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
}

export interface InboundWorld {
  /** The listener our HTTP/2 client connects to. */
  port: number;
  app: http.Server;
  appPort: number;
  /** Connections the app accepted. */
  appConnections(): number;
  /** Requests the app received. */
  seen: AppRequest[];
  pool: UpstreamPool;
  metrics: BridgeMetrics;
  close(): Promise<void>;
}

/**
 * Starts the world; `answer` is the app's handler (default: 200 "ok" at once). `appLimit` bounds
 * the bridge's app connections (default: the production limit).
 */
export async function startInboundWorld(
  opts: {
    limits?: H1Limits;
    appLimit?: HostLimit;
    answer?: (req: http.IncomingMessage, res: http.ServerResponse) => void;
  } = {},
): Promise<InboundWorld> {
  const seen: AppRequest[] = [];
  let connections = 0;
  const app = http.createServer({ maxHeaderSize: 1 << 20, keepAliveTimeout: 60_000 }, (req, res) => {
    seen.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers });
    if (opts.answer !== undefined) opts.answer(req, res);
    else res.end('ok');
  });
  app.maxHeadersCount = 0;
  app.on('connection', () => connections++);
  await once(app.listen(0, '127.0.0.1'), 'listening');
  const appPort = (app.address() as net.AddressInfo).port;
  const limits = opts.limits ?? { maxRequestLineBytes: 8192, maxHeaderBytes: 65536, maxHeaders: 128 };
  const pool = new UpstreamPool({
    limits,
    maxIdlePerHost: 512,
    idleTimeoutMs: 60_000,
    connectTimeoutMs: 2000,
  });
  const metrics = new BridgeMetrics();
  const policy = new InboundPolicy({
    authorizer: null,
    clientIdHeader: 'trellis-client-id',
    metrics: { authorized() {}, proxyError() {} },
    log: silentLogger,
  });
  const inbound = new MeshH2H1Inbound(policy, {
    pool,
    limits,
    metrics,
    accessLog: null,
    log: silentLogger,
    responseTimeoutMs: 0,
    ...(opts.appLimit !== undefined ? { appLimit: opts.appLimit } : {}),
  });
  const sockets = new Set<net.Socket>();
  const front = net.createServer((socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
    socket.on('error', () => {});
    inbound.accept(socket as tls.TLSSocket, { host: '127.0.0.1', port: appPort }, PEER_ID);
  });
  await once(front.listen(0, '127.0.0.1'), 'listening');
  return {
    port: (front.address() as net.AddressInfo).port,
    app,
    appPort,
    appConnections: () => connections,
    seen,
    pool,
    metrics,
    async close() {
      inbound.drain();
      pool.close();
      for (const s of sockets) s.destroy();
      front.close();
      app.closeAllConnections();
      await new Promise<void>((r) => app.close(() => r()));
    },
  };
}

/** Our HTTP/2 client connection (as the outbound proxy's) to `port`, ready for requests. */
export async function h2Client(port: number): Promise<H2Connection> {
  const socket = net.connect(port, '127.0.0.1');
  await once(socket, 'connect');
  return new Promise((resolve) => {
    const c: H2Connection = new H2Connection(socket, { role: 'client', onReady: () => resolve(c) });
  });
}

export interface Reply {
  status: number;
  fields: string[];
  body: string;
  code: number | null;
}

/** One request on our client connection; the whole reply. */
export function exchange(conn: H2Connection, fields: string[], body: Buffer | null = null): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const reply: Reply = { status: 0, fields: [], body: '', code: null };
    const handler: H2StreamHandler = {
      onHeaders(f) {
        if (reply.status === 0 && Number(f[1]) >= 200) {
          reply.status = Number(f[1]);
          reply.fields = f;
        }
      },
      onData(chunk) {
        reply.body += chunk.toString('latin1');
      },
      onClose(code) {
        reply.code = code;
        resolve(reply);
      },
      onDrain() {},
    };
    const stream = conn.request(fields, body === null, handler);
    if (stream === null) reject(new Error('no room on the connection'));
    else if (body !== null) stream.write(body, true);
  });
}

/** A field's value in a flat list. */
export function field(fields: readonly string[], name: string): string | undefined {
  for (let i = 0; i < fields.length; i += 2) if (fields[i] === name) return fields[i + 1];
  return undefined;
}
