// The outbound side of the mesh transport: where an endpoint that discovery describes as meshed
// (with an identity) is reached over mTLS instead of plaintext, and how.
//
// - HTTP/1 requests: an HTTP/1 upstream (h1-over-h2.ts) whose exchanges are streams of the pooled
//   mTLS connection to the endpoint that speaks the project's own HTTP/2 (ALPN trellis-h2h1/1,
//   h2h1-pool.ts).
// - The app's HTTP/2 and gRPC streams: node:http2 sessions over mTLS (ALPN trellis-h2/1) opened
//   by the HTTP/2 upstream pool through this class (SecureConnector).
// - Upgrade (WebSocket) requests: their own mTLS connection with ALPN trellis-http1/1, carrying
//   the HTTP/1 bytes as they are.
// - Opaque TCP, TLS from the app, CONNECT tunnels: an mTLS connection with ALPN trellis-tcp/1 and
//   the opaque transport header naming the endpoint's port (protocol.ts).
//
// A proxy without an identity has no MeshOutbound: meshed endpoints are then reached as before.
import type net from 'node:net';
import { UpstreamConnectError, type ConnectFailureReason } from '../errors.ts';
import type { H1Limits } from '../http/h1-parser.ts';
import type { SecureConnector } from '../http/h2-upstream-pool.ts';
import type { UpstreamPool } from '../http/upstream-pool.ts';
import type { H1Connect } from '../http/h1-client.ts';
import { meshIdentityOf, type Endpoint } from '../../core/endpoints.ts';
import type { Target } from '../../core/target.ts';
import { targetKey } from '../../core/target.ts';
import {
  closedAfterHandshake,
  connectMesh,
  meshFailureOf,
  openMeshSocket,
  type MeshClientContext,
} from './connect.ts';
import type { MeshCredentials } from './credentials.ts';
import type { Logger } from '../../core/log.ts';
import type { ProxyMetrics } from '../telemetry/metrics.ts';
import { H2LimitReport } from '../http/h2-limit-report.ts';
import { H1OverH2Conn } from './h1-over-h2.ts';
import { MeshH2Pool } from './h2h1-pool.ts';
import { ALPN_H2, ALPN_HTTP1, ALPN_TCP, encodeTcpHeader } from './protocol.ts';

export interface MeshOutboundOptions extends MeshClientContext {
  readonly metrics: MeshClientContext['metrics'] & { h2LimitExceeded: ProxyMetrics['h2LimitExceeded'] };
  readonly log: Logger;
  readonly credentials: MeshCredentials;
  readonly pool: UpstreamPool;
  readonly limits: H1Limits;
  readonly connectTimeoutMs: number;
  readonly idleTimeoutMs: number;
  /** Released HTTP/1 upstreams kept per meshed endpoint for its next requests. */
  readonly maxIdlePerEndpoint: number;
}

/** A meshed endpoint's HTTP/1 upstreams waiting for a request (kept while discovery keeps the endpoint). */
interface MeshH1Endpoint {
  readonly identity: string;
  readonly idle: H1OverH2Conn[];
}

export class MeshOutbound implements SecureConnector {
  private readonly opts: MeshOutboundOptions;
  /** The connections that carry HTTP/1 requests. */
  readonly h1Pool: MeshH2Pool;
  private readonly h1Endpoints = new WeakMap<Endpoint, MeshH1Endpoint>();

  constructor(opts: MeshOutboundOptions) {
    this.opts = opts;
    const report = new H2LimitReport(opts.metrics, opts.log, 'outbound');
    this.h1Pool = new MeshH2Pool({
      ctx: opts,
      connectTimeoutMs: opts.connectTimeoutMs,
      idleTimeoutMs: opts.idleTimeoutMs,
      onLimit: (limit, message, identity) => report.hit(limit, message, identity),
    });
  }

  // ---- SecureConnector: the HTTP/2 pool's mTLS sessions ---------------------------------

  hasCredentials(): boolean {
    return this.opts.credentials.current() !== null;
  }

  async whenReady(timeoutMs: number): Promise<boolean> {
    return (await this.opts.credentials.whenReady(timeoutMs)) !== null;
  }

  open(target: Target, identity: string): net.Socket {
    const key = this.opts.credentials.current();
    if (key === null) throw new UpstreamConnectError('no-identity', 'this proxy has no certificate yet');
    return openMeshSocket(this.opts, key, target, identity, ALPN_H2, false);
  }

  failureOf(err: unknown): ConnectFailureReason | undefined {
    return meshFailureOf(err);
  }

  failureOnClose(socket: net.Socket): ConnectFailureReason | undefined {
    return closedAfterHandshake(this.opts, socket);
  }

  // ---- HTTP/1 ---------------------------------------------------------------------------

  /**
   * The outbound HTTP/1 endpoint connector (http/h1-client.ts H1Connect): an upstream for one
   * request to a picked endpoint: a stream of its pooled HTTP/2 connection when it is meshed (an
   * Upgrade: an mTLS byte connection of its own), else a plain connection from the same pool.
   */
  readonly connectH1: H1Connect = (pick, upgrade, owner, cb) => {
    const identity = meshIdentityOf(pick.endpoint);
    const { pool, connectTimeoutMs } = this.opts;
    const address = pick.address;
    if (identity === null) {
      pool.acquire(address, owner, cb);
      return;
    }
    if (upgrade) {
      pool.acquire(address, owner, cb, {
        key: `mtls-http1 ${targetKey(address)} ${identity}`,
        connect: (done) => {
          connectMesh(this.opts, address, identity, ALPN_HTTP1, connectTimeoutMs, done);
        },
      });
      return;
    }
    // The common request finds a released upstream of the endpoint and needs nothing else.
    const endpoint = this.h1Endpoint(pick.endpoint!, identity);
    const idle = endpoint.idle.pop();
    if (idle !== undefined) {
      cb(idle, null);
      return;
    }
    // A new one is handed out once the endpoint's connection is up, so a failure to reach it
    // reads as what it was (identity-mismatch, tls-handshake-failed...).
    this.h1Pool.connection(address, identity, (conn, reason, err) => {
      if (conn === null) cb(null, reason ?? 'connect-failed', err);
      else
        cb(
          new H1OverH2Conn(this.h1Pool, address, identity, endpoint.idle, this.opts.maxIdlePerEndpoint),
          null,
        );
    });
  };

  /** The endpoint's idle HTTP/1 upstreams (discovery keeps the Endpoint object while it is unchanged). */
  private h1Endpoint(endpoint: Endpoint, identity: string): MeshH1Endpoint {
    let e = this.h1Endpoints.get(endpoint);
    if (e === undefined || e.identity !== identity) {
      e = { identity, idle: [] };
      this.h1Endpoints.set(endpoint, e);
    }
    return e;
  }

  // ---- opaque TCP -------------------------------------------------------------------------

  /**
   * Connects to a meshed endpoint for opaque bytes: mTLS with ALPN trellis-tcp/1, then the
   * transport header naming the endpoint's port. `cb` gets the socket (paused) or why not.
   */
  connectTcp(
    address: Target,
    identity: string,
    timeoutMs: number,
    cb: (socket: net.Socket | null, reason: ConnectFailureReason | null, err?: Error) => void,
  ): { cancel(): void } {
    return connectMesh(this.opts, address, identity, ALPN_TCP, timeoutMs, (socket, reason, err) => {
      if (socket === null) {
        cb(null, reason, err);
        return;
      }
      socket.write(encodeTcpHeader(address.port));
      cb(socket, null);
    });
  }
}
