// The pool of HTTP/2 client sessions to upstream targets. Each target gets one long-lived session
// carrying many multiplexed streams; another is opened only when every session is at the peer's
// SETTINGS_MAX_CONCURRENT_STREAMS (up to maxSessionsPerTarget). A session leaves the pool as soon
// as it receives GOAWAY, closes or fails, so new streams go to a fresh session while the streams
// in flight on the old one finish. Sessions with no stream for idleTimeoutMs are closed. When
// discovery removes an endpoint (drainEndpoint), its sessions leave the pool and close once their
// streams are done (destroyed after the drain's grace).
//
// `request` resolves with a stream only once its session is connected (SETTINGS received), so a connect failure is
// told apart from a failure of the exchange itself (502 connect-failed vs a reset), and only once a
// session has room for it under the peer's SETTINGS_MAX_CONCURRENT_STREAMS: when every session of
// the target is full (at most maxSessionsPerTarget), a request waits in the pool, at most
// MAX_WAITING per target (more: 502 connect-failed at once) and at most twice the connect timeout
// (504 connect-timeout), never in node:http2's own queue, which has neither bound: a peer that
// announces 0 streams would hold every request forever.
//
// Sessions to meshed endpoints (an expected identity given) run over mTLS connections that the
// `secure` connector opens (ALPN trellis-h2/1); they are pooled by address and identity and carry
// the app's HTTP/2 and gRPC streams. (HTTP/1 requests cross the mesh on the project's own HTTP/2:
// src/proxy/mesh/h2h1-pool.ts.)
import * as http2 from 'node:http2';
import * as net from 'node:net';
import { HTTP1_LIMIT_DEFAULTS } from '../config.ts';
import { UpstreamConnectError } from '../errors.ts';
import type { ConnectFailureReason } from '../errors.ts';
import type { Logger } from '../../core/log.ts';
import type { H1Limits } from './h1-parser.ts';
import { clientSessionOptions, H2_CONNECTION_WINDOW, H2_MAX_CONCURRENT_STREAMS } from './h2-node-settings.ts';
import { SessionIdleTimer } from './h2-session-idle.ts';
import { targetKey } from '../../core/target.ts';
import { WaitQueue } from '../transport/wait-queue.ts';

export { UpstreamConnectError } from '../errors.ts';

export interface Target {
  host: string;
  port: number;
}

/** Opens the mTLS connections of sessions to meshed endpoints (src/proxy/mesh/). */
export interface SecureConnector {
  /** Whether there are credentials to connect with now. */
  hasCredentials(): boolean;
  /** Resolves true once there are credentials, false when none came within timeoutMs. */
  whenReady(timeoutMs: number): Promise<boolean>;
  /** Starts a TLS connection (ALPN trellis-h2/1) that verifies the peer is `identity`. */
  open(target: Target, identity: string): net.Socket;
  /** Why such a connection failed, from the error it emitted (undefined: a plain connect failure). */
  failureOf(err: unknown): ConnectFailureReason | undefined;
  /** Why such a connection closed before the peer's SETTINGS (undefined: a plain connect failure). */
  failureOnClose(socket: net.Socket): ConnectFailureReason | undefined;
}

export interface H2UpstreamPoolOptions {
  connectTimeoutMs: number;
  idleTimeoutMs: number;
  log: Logger;
  /** Default 4. */
  maxSessionsPerTarget?: number;
  /** Connects sessions to meshed endpoints; absent: this proxy has no identity (never asked). */
  secure?: SecureConnector;
  /** The HTTP/1 head limits, whose response limits apply to upstream responses (default: http1's defaults). */
  headLimits?: H1Limits;
}

interface PooledSession {
  readonly key: string;
  /** The address it goes to (targetKey): what drainEndpoint is given. */
  readonly address: string;
  readonly session: http2.ClientHttp2Session;
  /** Settles when the session is connected (or failed to connect); never rejects unobserved. */
  readonly ready: Promise<void>;
  readonly idle: SessionIdleTimer;
  /** False once the session received GOAWAY, closed or failed: no new streams. */
  usable: boolean;
  /** Its endpoint left discovery (drainEndpoint). */
  draining: boolean;
}

/** Requests that may wait for room on the sessions of one target. */
export const MAX_WAITING = 1024;
/** How long a request waits for room when connects have no timeout (connectTimeoutMs 0). */
const UNTIMED_WAIT_MS = 10_000;

export class H2UpstreamPool {
  private readonly opts: H2UpstreamPoolOptions;
  /** Per pool key, the requests waiting for a session with room: each is woken to pick again. */
  private readonly waiting = new Map<string, WaitQueue<() => void>>();
  private readonly maxSessions: number;
  private readonly byTarget = new Map<string, PooledSession[]>();
  private readonly all = new Set<PooledSession>();
  private readonly sessionOptions: http2.ClientSessionOptions;

  constructor(opts: H2UpstreamPoolOptions) {
    this.opts = opts;
    this.maxSessions = Math.max(1, opts.maxSessionsPerTarget ?? 4);
    this.sessionOptions = clientSessionOptions(opts.headLimits ?? HTTP1_LIMIT_DEFAULTS);
  }

  /**
   * Opens a stream to `target`. Rejects with UpstreamConnectError when no session could be
   * connected, or with Node's error when the request itself is refused (e.g. invalid headers).
   */
  async request(
    target: Target,
    headers: http2.OutgoingHttpHeaders,
    options: http2.ClientSessionRequestOptions,
    /** The identity a meshed endpoint must prove (mTLS session); null: plaintext. */
    identity: string | null = null,
  ): Promise<{ stream: http2.ClientHttp2Stream; session: http2.ClientHttp2Session }> {
    if (identity !== null) await this.meshReady(target);
    // A session can be lost between being picked and being used (GOAWAY while connecting);
    // one more attempt on a fresh session covers that race without looping.
    let deadline = 0;
    for (let attempt = 0; ;) {
      const pooled = this.pick(target, identity);
      await pooled.ready;
      if (!pooled.usable || pooled.session.closed || pooled.session.destroyed) {
        if (attempt++ === 0) continue;
        throw new UpstreamConnectError('connect-failed', `session to ${targetKey(target)} closed before use`);
      }
      if (pooled.idle.active >= streamLimit(pooled)) {
        // Every session is full: wait for room, then pick again.
        const connectMs = this.opts.connectTimeoutMs;
        deadline ||= performance.now() + (connectMs > 0 ? 2 * connectMs : UNTIMED_WAIT_MS);
        await this.roomFor(pooled.key, deadline);
        continue;
      }
      return { stream: this.open(pooled, headers, options), session: pooled.session };
    }
  }

  /** Resolves when a session under `key` may have room; rejects past `deadline` or when too many wait. */
  private roomFor(key: string, deadline: number): Promise<void> {
    let waiters = this.waiting.get(key);
    if (waiters === undefined) this.waiting.set(key, (waiters = new WaitQueue(MAX_WAITING)));
    const queue = waiters;
    return new Promise<void>((resolve, reject) => {
      const timedOut = (): void => {
        this.forgetIfIdle(key, queue);
        reject(new UpstreamConnectError('connect-timeout', `no stream to ${key} became free in time`));
      };
      if (!queue.add(resolve, Math.max(1, deadline - performance.now()), timedOut))
        reject(
          new UpstreamConnectError(
            'connect-failed',
            `${MAX_WAITING} requests already wait for a stream to ${key}`,
          ),
        );
    });
  }

  /**
   * Wakes the requests waiting for room under `key`: the one waiting longest when a stream closed
   * (one place came free), every one when a session left or changed its limit.
   */
  private wake(key: string, all = true): void {
    const waiters = this.waiting.get(key);
    if (waiters === undefined) return;
    if (all) for (const resolve of waiters.takeAll()) resolve();
    else waiters.shift()?.();
    this.forgetIfIdle(key, waiters);
  }

  /** Drops the queue of `key` once no request waits in it. */
  private forgetIfIdle(key: string, waiters: WaitQueue<() => void>): void {
    if (waiters.size === 0 && this.waiting.get(key) === waiters) this.waiting.delete(key);
  }

  private open(
    pooled: PooledSession,
    headers: http2.OutgoingHttpHeaders,
    options: http2.ClientSessionRequestOptions,
  ): http2.ClientHttp2Stream {
    const stream = pooled.session.request(headers, options);
    stream.on('error', () => {}); // until the caller's own listener is attached (a tick later)
    pooled.idle.streamOpened();
    stream.once('close', () => {
      pooled.idle.streamClosed();
      this.wake(pooled.key, false);
    });
    return stream;
  }

  /** Waits (up to the connect timeout) for the credentials a mesh session needs. */
  private async meshReady(target: Target): Promise<void> {
    const secure = this.opts.secure;
    if (secure === undefined)
      throw new UpstreamConnectError(
        'no-identity',
        `${targetKey(target)} is meshed but this proxy has no identity`,
      );
    if (secure.hasCredentials()) return;
    if (!(await secure.whenReady(this.opts.connectTimeoutMs)))
      throw new UpstreamConnectError('no-identity', 'this proxy has no certificate yet');
  }

  /** Closes every session: gracefully (in-flight streams finish), or at once when `hard`. */
  close(hard: boolean): void {
    for (const pooled of [...this.all]) {
      this.retire(pooled);
      if (hard) pooled.session.destroy();
      else if (!pooled.session.closed) pooled.session.close();
    }
  }

  /**
   * The endpoint at `address` (targetKey) left discovery: its sessions (plain and mTLS) take no
   * new stream and close once their streams are done, destroyed after `graceMs` at the latest. A
   * session still connecting first serves the requests that wait for it.
   */
  drainEndpoint(address: string, graceMs: number): void {
    for (const pooled of this.all) {
      if (pooled.address !== address || pooled.draining) continue;
      pooled.draining = true;
      // The requests awaiting `ready` went first (they awaited before this): their streams are open.
      pooled.ready.then(() => this.drainSession(pooled, graceMs), noop);
    }
  }

  /** Sessions currently open (for tests and the admin view). */
  get sessionCount(): number {
    return this.all.size;
  }

  private pick(target: Target, identity: string | null): PooledSession {
    const key = identity === null ? targetKey(target) : `${targetKey(target)} ${identity}`;
    const sessions = this.byTarget.get(key) ?? [];
    let leastLoaded: PooledSession | undefined;
    for (const pooled of sessions) {
      if (pooled.idle.active < streamLimit(pooled)) return pooled;
      if (leastLoaded === undefined || pooled.idle.active < leastLoaded.idle.active) leastLoaded = pooled;
    }
    // All at the peer's limit: a new session, or (at the cap) the least loaded one, full, which
    // request() waits on for room.
    if (leastLoaded !== undefined && sessions.length >= this.maxSessions) return leastLoaded;
    const pooled = this.connect(target, key, identity);
    sessions.push(pooled);
    this.byTarget.set(key, sessions);
    return pooled;
  }

  private connect(target: Target, key: string, identity: string | null): PooledSession {
    const { log, connectTimeoutMs, idleTimeoutMs, secure } = this.opts;
    const host = target.host.includes(':') ? `[${target.host}]` : target.host;
    let socket: net.Socket | null = null;
    const session = http2.connect(`${identity === null ? 'http' : 'https'}://${host}:${target.port}`, {
      ...this.sessionOptions,
      createConnection:
        identity === null || secure === undefined
          ? () => net.connect({ host: target.host, port: target.port, noDelay: true })
          : () => (socket = secure.open(target, identity)),
    });
    let settle!: (err?: Error) => void;
    const ready = new Promise<void>((resolve, reject) => {
      settle = (err) => (err === undefined ? resolve() : reject(err));
    });
    const pooled: PooledSession = {
      key,
      address: targetKey(target),
      session,
      ready,
      idle: new SessionIdleTimer(session, idleTimeoutMs, () => {
        this.retire(pooled);
        session.close();
      }),
      usable: true,
      draining: false,
    };
    ready.catch(() => {}); // waiters observe it; an unwaited failure must not be "unhandled"
    this.all.add(pooled);

    let connected = false;
    const timer =
      connectTimeoutMs > 0
        ? setTimeout(() => {
            session.destroy(
              new UpstreamConnectError(
                'connect-timeout',
                `connect to ${key} timed out after ${connectTimeoutMs} ms`,
              ),
            );
          }, connectTimeoutMs)
        : undefined;
    session.once('connect', () => {
      try {
        session.setLocalWindowSize(H2_CONNECTION_WINDOW);
      } catch {
        // the session closed in the meantime: its streams will report that
      }
    });
    // Ready on the peer's SETTINGS, not on TCP connect: until nghttp2 knows the peer's
    // MAX_CONCURRENT_STREAMS it sends any number of streams, and a burst beyond the limit would
    // be refused; once known, nghttp2 queues the excess streams locally instead.
    session.once('remoteSettings', () => {
      connected = true;
      clearTimeout(timer);
      pooled.idle.start();
      settle();
    });
    // The peer may raise its stream limit later.
    session.on('remoteSettings', () => this.wake(key));
    session.on('goaway', (code: number) => {
      log.debug('upstream h2 session received GOAWAY', { upstream: key, code });
      this.retire(pooled);
    });
    let errored = false;
    session.on('error', (err: Error) => {
      errored = true;
      this.retire(pooled);
      if (connected) {
        log.debug('upstream h2 session error', { upstream: key, err });
        return;
      }
      if (err instanceof UpstreamConnectError) {
        settle(err);
        return;
      }
      const reason = secure?.failureOf(err) ?? 'connect-failed';
      settle(new UpstreamConnectError(reason, `connect to ${key} failed (${reason}): ${err.message}`, err));
    });
    session.on('frameError', (type: number, code: number, id: number) => {
      log.debug('upstream h2 frame error', { upstream: key, type, code, stream: id });
    });
    session.once('close', () => {
      clearTimeout(timer);
      pooled.idle.stop();
      this.retire(pooled);
      this.all.delete(pooled);
      if (!connected && !errored) {
        const reason = (socket !== null ? secure?.failureOnClose(socket) : undefined) ?? 'connect-failed';
        settle(new UpstreamConnectError(reason, `connection to ${key} closed while connecting (${reason})`));
      }
    });
    return pooled;
  }

  /** Out of rotation, closed once its streams are done, destroyed after `graceMs` at the latest. */
  private drainSession(pooled: PooledSession, graceMs: number): void {
    this.retire(pooled);
    const session = pooled.session;
    if (session.closed || session.destroyed) return;
    session.close();
    if (!session.destroyed) setTimeout(() => session.destroy(), Math.max(1, graceMs)).unref();
  }

  /** Takes a session out of rotation (it may still finish its streams). */
  private retire(pooled: PooledSession): void {
    pooled.usable = false;
    const sessions = this.byTarget.get(pooled.key);
    if (sessions === undefined) return;
    const i = sessions.indexOf(pooled);
    if (i >= 0) sessions.splice(i, 1);
    if (sessions.length === 0) this.byTarget.delete(pooled.key);
    // Its place may go to a new session.
    if (i >= 0) this.wake(pooled.key);
  }
}

/** The streams a session may carry at once: the peer's SETTINGS_MAX_CONCURRENT_STREAMS. */
function streamLimit(pooled: PooledSession): number {
  return pooled.session.remoteSettings?.maxConcurrentStreams ?? H2_MAX_CONCURRENT_STREAMS;
}

const noop = (): void => {};
