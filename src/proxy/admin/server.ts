// The proxy's admin listener (default 0.0.0.0:4191): /metrics for Prometheus, /ready and /live
// for probes, /config to see the effective configuration, and POST /shutdown to drain the proxy,
// which only loopback peers may call. Plain node:http: this listener is not on the data path.
// It never crashes on bad input: every handler failure becomes a 500 and a warning.
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { BlockList, isIP } from 'node:net';
import type { AddressInfo } from 'node:net';
import { TrellisError } from '../../core/errors.ts';
import type { Logger } from '../../core/log.ts';

export interface AdminOptions {
  listen: { host: string; port: number };
  metrics: { render(): string };
  /** The effective configuration, served as JSON at /config. */
  config: () => unknown;
  /** /ready: 200 "ready\n" when true, 503 otherwise. */
  isReady: () => boolean;
  /** POST /shutdown from a loopback peer (called once, after the 202 is sent). */
  onShutdown: () => void;
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

type Handler = (req: IncomingMessage, res: ServerResponse) => void;
interface Route {
  methods: readonly string[];
  handle: Handler;
}

function send(res: ServerResponse, status: number, contentType: string, body: string): void {
  res.writeHead(status, {
    'content-type': contentType,
    'content-length': Buffer.byteLength(body),
    'cache-control': 'no-store',
  });
  res.end(body);
}

const TEXT = 'text/plain; charset=utf-8';
const READ = ['GET', 'HEAD'];

function buildRoutes(opts: AdminOptions): Map<string, Route> {
  let shutdownRequested = false;
  return new Map<string, Route>([
    [
      '/metrics',
      {
        methods: READ,
        handle: (_req, res) =>
          send(res, 200, 'text/plain; version=0.0.4; charset=utf-8', opts.metrics.render()),
      },
    ],
    [
      '/ready',
      {
        methods: READ,
        handle: (_req, res) =>
          opts.isReady() ? send(res, 200, TEXT, 'ready\n') : send(res, 503, TEXT, 'not ready\n'),
      },
    ],
    ['/live', { methods: READ, handle: (_req, res) => send(res, 200, TEXT, 'live\n') }],
    [
      '/config',
      {
        methods: READ,
        handle: (_req, res) =>
          send(res, 200, 'application/json', JSON.stringify(opts.config() ?? null, null, 2) + '\n'),
      },
    ],
    [
      '/shutdown',
      {
        methods: ['POST'],
        handle: (req, res) => {
          const peer = req.socket.remoteAddress;
          if (!isLoopbackAddress(peer)) {
            opts.log.warn('admin: refused shutdown from a non-loopback peer', { peer });
            send(res, 403, TEXT, 'shutdown is only allowed from loopback\n');
            return;
          }
          const first = !shutdownRequested;
          shutdownRequested = true;
          res.once('finish', () => {
            if (!first) return;
            opts.log.info('admin: shutdown requested', { peer });
            try {
              opts.onShutdown();
            } catch (err) {
              opts.log.error('admin: shutdown handler failed', { err });
            }
          });
          send(res, 202, TEXT, 'shutting down\n');
        },
      },
    ],
  ]);
}

function requestPath(url: string | undefined): string {
  if (url === undefined) return '/';
  const q = url.indexOf('?');
  return q === -1 ? url : url.slice(0, q);
}

export async function startAdmin(opts: AdminOptions): Promise<AdminServer> {
  const routes = buildRoutes(opts);

  const server = createServer((req, res) => {
    req.resume(); // no endpoint reads a body; discard any
    try {
      const route = routes.get(requestPath(req.url));
      if (route === undefined) return send(res, 404, TEXT, 'not found\n');
      if (!route.methods.includes(req.method ?? '')) {
        res.setHeader('allow', route.methods.join(', '));
        return send(res, 405, TEXT, 'method not allowed\n');
      }
      route.handle(req, res);
    } catch (err) {
      opts.log.warn('admin: request failed', { path: requestPath(req.url), err });
      if (!res.headersSent) send(res, 500, TEXT, 'internal error\n');
      else res.destroy();
    }
  });
  server.headersTimeout = 10_000;
  server.requestTimeout = 30_000;
  server.keepAliveTimeout = 5_000;
  server.on('clientError', (_err, socket) => {
    if (socket.writable)
      socket.end('HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\n\r\n');
    else socket.destroy();
  });

  await new Promise<void>((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException) => {
      reject(
        new TrellisError(
          'TRELLIS_ERR_ADMIN_LISTEN',
          `admin listener cannot listen on ${opts.listen.host}:${opts.listen.port}: ${err.message}`,
          { cause: err },
        ),
      );
    };
    server.once('error', onError);
    server.listen(opts.listen.port, opts.listen.host, () => {
      server.off('error', onError);
      resolve();
    });
  });
  server.on('error', (err) => opts.log.warn('admin listener error', { err }));

  const bound = server.address() as AddressInfo;
  const address = { host: bound.address, port: bound.port };
  opts.log.info('admin listening', { address: `${address.host}:${address.port}` });

  let closing: Promise<void> | undefined;
  return {
    address,
    close() {
      closing ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      return closing;
    },
  };
}
