// The proxy's admin listener (default 0.0.0.0:4191): /metrics for Prometheus, /ready and /live
// for probes, /config to see the effective configuration, /identity for the proxy's current
// certificate chain, /debug/breakers for the outbound circuit breakers, GET /tap for a live tap (a
// stream of JSON lines, admin/tap-route.ts: loopback peers only; the control plane taps over
// mutual TLS on the tap listener, admin/tap-listener.ts), and POST /shutdown to drain the proxy. Shutdown needs more than a loopback
// peer (any local proxy that relays requests is one): the admin token the proxy was started with
// (`--admin-token-file`), as `Authorization: Bearer`; without a token it is disabled.
// It speaks HTTP/1.1 over node:net with the proxy's own strict parser rather than node:http,
// because loading node:http costs the process ~15 MB of memory.
// It never crashes on bad input: every handler failure becomes a 500 and a warning.
import net, { BlockList, isIP, type AddressInfo } from 'node:net';
import { TrellisError } from '../../core/errors.ts';
import { bearerToken, matchesSecret, secretDigest } from '../../core/bearer.ts';
import type { Logger } from '../../core/log.ts';
import { parseRequestHead } from '../http/h1-parser.ts';
import { reasonPhrase } from '../http/reason-phrases.ts';
import { ConnectionLimits, type LimitAction, type LimitKind } from '../transport/connection-limits.ts';
import type { TapHub } from '../telemetry/tap-hub.ts';
import { tapRoute } from './tap-route.ts';

export interface AdminOptions {
  listen: { host: string; port: number };
  metrics: { render(): string };
  /** The effective configuration, served as JSON at /config. */
  config: () => unknown;
  /** /ready: 200 "ready\n" when true, 503 otherwise. */
  isReady: () => boolean;
  /**
   * The proxy's current certificate chain (PEM, leaf first), served at /identity; null while it
   * has none. Absent: the proxy has no identity (/identity is always 404). Certificates are public,
   * so any peer may read them (the private key is never served).
   */
  identity?: () => string | null;
  /** The circuit breakers of the outbound backends, served as JSON at /debug/breakers. */
  breakers?: () => unknown;
  /** POST /shutdown from a loopback peer with the token (called once, after the 202 is sent). */
  onShutdown: () => void;
  /** The token POST /shutdown must present; null or absent: shutdown over HTTP is disabled. */
  shutdownToken?: string | null;
  /** Live taps (GET /tap); absent: /tap is 404. */
  tap?: TapHub;
  /** Time a request may take to arrive, or a connection may stay idle (default 10 s). */
  requestTimeoutMs?: number;
  /** Counts a connection shed or refused at the admin listener's limits. */
  onConnectionLimit?: (limit: LimitKind, action: LimitAction) => void;
  log: Logger;
}

export interface AdminServer {
  address: { host: string; port: number };
  close(): Promise<void>;
}

const loopback = new BlockList();
loopback.addSubnet('127.0.0.0', 8, 'ipv4');
loopback.addAddress('::1', 'ipv6');

/**
 * Whether a peer address (as node reports it in socket.remoteAddress) is loopback: 127.0.0.0/8,
 * ::1, or an IPv4-mapped 127.x address (::ffff:127.0.0.1, also in hex). Anything else, including
 * malformed input, is not.
 */
export function isLoopbackAddress(addr: string | undefined): boolean {
  if (typeof addr !== 'string') return false;
  const family = isIP(addr);
  if (family === 0) return false;
  try {
    return loopback.check(addr, family === 4 ? 'ipv4' : 'ipv6');
  } catch {
    return false;
  }
}

export interface AdminRequest {
  readonly method: string;
  readonly path: string;
  /** The query string, without '?' ('' when none). */
  readonly query: string;
  readonly peer: string | undefined;
  /** The Host header, or null (HTTP/1.0). */
  readonly host: string | null;
  /** The Authorization header, or null. */
  readonly authorization: string | null;
}

function headerValue(headers: readonly string[], name: string): string | null {
  for (let i = 0; i < headers.length; i += 2) {
    if (headers[i]!.toLowerCase() === name) return headers[i + 1]!;
  }
  return null;
}
export interface AdminResponse {
  status: number;
  contentType: string;
  body: string;
  headers?: Record<string, string>;
  /** Runs once the response has been written. */
  after?: () => void;
  /**
   * A streamed answer (GET /tap): the head goes out without a length and the socket is handed
   * over; the stream ends when either side closes it. `body` is not sent.
   */
  takeOver?: (socket: net.Socket) => void;
}
export interface Route {
  methods: readonly string[];
  handle: (req: AdminRequest) => AdminResponse;
}

const TEXT = 'text/plain; charset=utf-8';
const READ = ['GET', 'HEAD'];
const LIMITS = { maxRequestLineBytes: 8192, maxHeaderBytes: 32 * 1024, maxHeaders: 64 };
/** Time a request (head and body) may take to arrive, or a keep-alive connection may stay idle. */
const REQUEST_TIMEOUT_MS = 10_000;
/** Request bodies are read and dropped; larger ones are refused. */
const MAX_BODY_BYTES = 64 * 1024;
/**
 * Connections at once, in all and per peer address: scrapers and probes use a few. At a limit the
 * oldest connection makes room (an admin connection is never busy for longer than one answer).
 */
export const ADMIN_MAX_CONNECTIONS = 256;
export const ADMIN_MAX_PER_PEER = 64;

export const text = (status: number, body: string): AdminResponse => ({ status, contentType: TEXT, body });

function buildRoutes(opts: AdminOptions): Map<string, Route> {
  let shutdownRequested = false;
  const tokenDigest = opts.shutdownToken == null ? null : secretDigest(opts.shutdownToken);
  const routes = new Map<string, Route>([
    [
      '/metrics',
      {
        methods: READ,
        handle: () => ({
          status: 200,
          contentType: 'text/plain; version=0.0.4; charset=utf-8',
          body: opts.metrics.render(),
        }),
      },
    ],
    [
      '/ready',
      { methods: READ, handle: () => (opts.isReady() ? text(200, 'ready\n') : text(503, 'not ready\n')) },
    ],
    ['/live', { methods: READ, handle: () => text(200, 'live\n') }],
    [
      '/config',
      {
        methods: READ,
        handle: () => ({
          status: 200,
          contentType: 'application/json',
          body: JSON.stringify(opts.config() ?? null, null, 2) + '\n',
        }),
      },
    ],
    [
      '/debug/breakers',
      {
        methods: READ,
        handle: () => ({
          status: 200,
          contentType: 'application/json',
          body: JSON.stringify(opts.breakers?.() ?? [], null, 2) + '\n',
        }),
      },
    ],
    [
      '/identity',
      {
        methods: READ,
        handle: () => {
          const chainPem = opts.identity?.() ?? null;
          if (chainPem === null || chainPem === '') return text(404, 'this proxy has no certificate\n');
          // text/plain rather than application/x-pem-file: the official Kubernetes client reads
          // it through the API server's pods/proxy (`trellis check --proxy`) only as text.
          return { status: 200, contentType: 'text/plain; charset=utf-8', body: chainPem };
        },
      },
    ],
    [
      '/shutdown',
      {
        methods: ['POST'],
        handle: (req) => {
          if (!isLoopbackAddress(req.peer)) {
            opts.log.warn('admin: refused shutdown from a non-loopback peer', { peer: req.peer });
            return text(403, 'shutdown is only allowed from loopback\n');
          }
          if (tokenDigest === null) {
            return text(403, 'shutdown over HTTP is disabled: start the proxy with --admin-token-file\n');
          }
          const sent = bearerToken(req.authorization);
          if (sent === null || !matchesSecret(sent, tokenDigest)) {
            opts.log.warn('admin: refused shutdown without the admin token', { peer: req.peer });
            return {
              ...text(401, 'shutdown needs the admin token: Authorization: Bearer <token>\n'),
              headers: { 'www-authenticate': 'Bearer' },
            };
          }
          const first = !shutdownRequested;
          shutdownRequested = true;
          return {
            ...text(202, 'shutting down\n'),
            after: () => {
              if (!first) return;
              opts.log.info('admin: shutdown requested', { peer: req.peer });
              try {
                opts.onShutdown();
              } catch (err) {
                opts.log.error('admin: shutdown handler failed', { err });
              }
            },
          };
        },
      },
    ],
  ]);
  if (opts.tap !== undefined) routes.set('/tap', tapRoute(opts.tap, opts.log));
  return routes;
}

function requestPath(url: string): string {
  const q = url.indexOf('?');
  return q === -1 ? url : url.slice(0, q);
}

function requestQuery(url: string): string {
  const q = url.indexOf('?');
  return q === -1 ? '' : url.slice(q + 1);
}

function respond(routes: Map<string, Route>, req: AdminRequest, log: Logger): AdminResponse {
  try {
    const route = routes.get(req.path);
    if (route === undefined) return text(404, 'not found\n');
    if (!route.methods.includes(req.method)) {
      return { ...text(405, 'method not allowed\n'), headers: { allow: route.methods.join(', ') } };
    }
    return route.handle(req);
  } catch (err) {
    log.warn('admin: request failed', { path: req.path, err });
    return text(500, 'internal error\n');
  }
}

/** The head of a streamed answer: no length, the body ends when the connection closes. */
function streamHead(res: AdminResponse): string {
  let s = `HTTP/1.1 ${res.status} ${reasonPhrase(res.status)}\r\n`;
  s += `content-type: ${res.contentType}\r\ncache-control: no-store\r\nconnection: close\r\n`;
  for (const [k, v] of Object.entries(res.headers ?? {})) s += `${k}: ${v}\r\n`;
  return s + '\r\n';
}

function serialize(res: AdminResponse, head: boolean, close: boolean): Buffer {
  const body = Buffer.from(res.body, 'utf8');
  let s = `HTTP/1.1 ${res.status} ${reasonPhrase(res.status)}\r\n`;
  s += `content-type: ${res.contentType}\r\ncontent-length: ${body.length}\r\ncache-control: no-store\r\n`;
  for (const [k, v] of Object.entries(res.headers ?? {})) s += `${k}: ${v}\r\n`;
  if (close) s += 'connection: close\r\n';
  const h = Buffer.from(s + '\r\n', 'latin1');
  return head ? h : Buffer.concat([h, body]);
}

/**
 * One admin connection: sequential keep-alive requests; bodies are read and discarded. Also the
 * HTTP of the mTLS tap listener (tap-listener.ts), on its TLS sockets.
 */
export function serveConnection(
  socket: net.Socket,
  routes: Map<string, Route>,
  log: Logger,
  requestMs: number,
): void {
  let buf: Buffer | null = null;
  let skip = 0; // request body bytes still to discard
  // Each request, head and body, must arrive within requestMs of the previous one's end (or of
  // the connection's start), however slowly its bytes trickle in; idle keep-alive likewise.
  let deadline = setTimeout(() => socket.destroy(), requestMs);
  const nextRequest = (): void => {
    clearTimeout(deadline);
    deadline = setTimeout(() => socket.destroy(), requestMs);
  };
  socket.once('close', () => clearTimeout(deadline));
  socket.on('error', () => {});
  socket.on('data', (chunk: Buffer) => {
    if (skip > 0) {
      const n = Math.min(skip, chunk.length);
      skip -= n;
      chunk = chunk.subarray(n);
      if (skip === 0) nextRequest();
      if (chunk.length === 0) return;
    }
    buf = buf === null ? chunk : Buffer.concat([buf, chunk]);
    while (buf !== null && skip === 0) {
      const r = parseRequestHead(buf, 0, buf.length, LIMITS);
      if (r.kind === 'incomplete') return;
      if (r.kind === 'error') {
        socket.end(serialize(text(400, `${r.message}\n`), false, true));
        buf = null;
        return;
      }
      const head = r.head;
      if (head.bodyKind === 'chunked') {
        socket.end(serialize(text(400, 'chunked bodies are not accepted here\n'), false, true));
        buf = null;
        return;
      }
      if (head.bodyKind === 'length' && head.contentLength > MAX_BODY_BYTES) {
        socket.end(serialize(text(413, 'request bodies over 64 KiB are not accepted here\n'), false, true));
        buf = null;
        return;
      }
      let rest: Buffer | null = buf.subarray(r.end);
      if (head.bodyKind === 'length') {
        const n = Math.min(head.contentLength, rest.length);
        skip = head.contentLength - n;
        rest = rest.subarray(n);
      }
      buf = rest.length > 0 ? rest : null;
      if (skip === 0) nextRequest();
      const req = {
        method: head.method,
        path: requestPath(head.target),
        query: requestQuery(head.target),
        peer: socket.remoteAddress,
        host: head.host,
        authorization: headerValue(head.headers, 'authorization'),
      };
      const res = respond(routes, req, log);
      if (res.takeOver !== undefined && head.method === 'GET') {
        // The connection is the stream's from now on: no more requests, no request deadline.
        clearTimeout(deadline);
        socket.removeAllListeners('data');
        socket.write(streamHead(res));
        res.takeOver(socket);
        return;
      }
      const close = head.connectionClose;
      socket.write(serialize(res, head.method === 'HEAD', close), () => res.after?.());
      if (close) {
        socket.end();
        return;
      }
    }
  });
}

export async function startAdmin(opts: AdminOptions): Promise<AdminServer> {
  const routes = buildRoutes(opts);
  const sockets = new Set<net.Socket>();
  const limits = new ConnectionLimits({
    max: ADMIN_MAX_CONNECTIONS,
    maxPerPeer: ADMIN_MAX_PER_PEER,
    onLimit: (limit, action) => opts.onConnectionLimit?.(limit, action),
    log: (msg, fields) => opts.log.warn(`admin: ${msg}`, fields),
  });
  const server = net.createServer((socket) => {
    if (!limits.admit(socket)) {
      socket.on('error', () => {});
      socket.destroy();
      return;
    }
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
    serveConnection(socket, routes, opts.log, opts.requestTimeoutMs ?? REQUEST_TIMEOUT_MS);
  });

  const address = await bindListener(
    server,
    opts.listen,
    'TRELLIS_ERR_ADMIN_LISTEN',
    'admin listener',
    opts.log,
  );
  opts.log.info('admin listening', { address: `${address.host}:${address.port}` });
  return { address, close: closeOnce(server, sockets) };
}

/**
 * Binds `server` to `listen` and returns the bound address; a TrellisError with `code` naming
 * `what` when it cannot. Later errors are logged. (Also the mTLS tap listener's, tap-listener.ts.)
 */
export async function bindListener(
  server: net.Server,
  listen: { host: string; port: number },
  code: string,
  what: string,
  log: Logger,
): Promise<{ host: string; port: number }> {
  await new Promise<void>((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException) => {
      reject(
        new TrellisError(code, `${what} cannot listen on ${listen.host}:${listen.port}: ${err.message}`, {
          cause: err,
        }),
      );
    };
    server.once('error', onError);
    server.listen(listen.port, listen.host, () => {
      server.off('error', onError);
      resolve();
    });
  });
  server.on('error', (err) => log.warn(`${what} error`, { err }));
  const bound = server.address() as AddressInfo;
  return { host: bound.address, port: bound.port };
}

/** A close() that stops `server` and destroys its open `sockets`, the same promise every call. */
export function closeOnce(server: net.Server, sockets: ReadonlySet<net.Socket>): () => Promise<void> {
  let closing: Promise<void> | undefined;
  return () => {
    closing ??= new Promise<void>((resolve) => {
      server.close(() => resolve());
      for (const s of sockets) s.destroy();
    });
    return closing;
  };
}
