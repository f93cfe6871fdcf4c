// The loopback relay of `trellis dashboard`, as `linkerd viz dashboard` forwards a local port: the
// page and its API reads are served on 127.0.0.1 and relayed to the control plane's HTTP API, with
// the operator token added to the reads that need it (control-api.ts requestHeaders: GET
// /api/tap, /api/traces), so that the page's live tap and recent traces work where the control
// plane refuses them to a browser that has no token (`trellis control`, `trellis up` off loopback).
//
// The relay holds a credential, so it relays as little as it can:
// - it listens on 127.0.0.1 only, and answers only requests whose Host is its own (127.0.0.1:PORT
//   or localhost:PORT): a web page that rebinds its own name to 127.0.0.1 (DNS rebinding) sends
//   its own Host and is refused (403);
// - it answers only the browser that opened the URL it printed: that URL carries a random key
//   (/dashboard?key=KEY), which the relay trades for an HttpOnly, SameSite=Strict cookie and a
//   redirect to /dashboard; any request without the cookie (or the key) is refused (401), so
//   other local users and processes cannot read live requests with the operator's token;
// - GET and HEAD only, without a body (405, 400): nothing that changes state is ever relayed with
//   the token; only /dashboard, /dashboard/* and /api/* (404 otherwise), and only an origin-form
//   request target (an absolute URI could name another host);
// - an /api/* read that a browser says is cross-site (Origin not the relay's, Sec-Fetch-Site
//   neither same-origin nor none) is refused (403): another page cannot open a tap through it;
// - only the request's path and query and a fixed set of response headers cross it (no cookies,
//   no client headers); at most 32 requests at a time (503 past that); the control plane must
//   send an answer's head within 10 s (502) and a non-streaming answer must end within 30 s
//   (RELAY_LIMITS); a tap streams through (piped with backpressure, never buffered
//   whole) until either side closes.
// Every refusal is counted (DashboardRelay.refused) and told to `onRefusal` (the command logs it,
// rate-limited).
import { randomBytes } from 'node:crypto';
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { matchesSecret, secretDigest } from '../core/bearer.ts';
import { requestHeaders, type ControlApi } from './control-api.ts';

export interface RelayLimits {
  /** Relayed requests at a time; past it, 503. */
  readonly maxInFlight: number;
  /** How long the control plane may take to send an answer's head (then 502). */
  readonly headTimeoutMs: number;
  /** How long a non-streaming answer may take in all (then it is cut). */
  readonly totalTimeoutMs: number;
}

export const RELAY_LIMITS: RelayLimits = { maxInFlight: 32, headTimeoutMs: 10_000, totalTimeoutMs: 30_000 };

/** The query parameter of the printed URL that carries the key. */
const KEY_PARAM = 'key';

/** Paths whose answer is a stream that lasts (the page's live tap). */
const STREAMING_PATHS = new Set(['/api/tap']);

/** Response headers passed back from the control plane (others, e.g. set-cookie, are not). */
const PASSED_HEADERS = [
  'content-type',
  'content-security-policy',
  'x-content-type-options',
  'referrer-policy',
  'cache-control',
  'www-authenticate',
  'retry-after',
] as const;

export type RelayRefusal = 'host' | 'key' | 'method' | 'body' | 'path' | 'cross-site' | 'busy' | 'upstream';

export interface DashboardRelayOptions {
  readonly api: ControlApi;
  /** The loopback port to listen on; 0: any free one. */
  readonly port: number;
  /** Told of each refusal (what and why), for a rate-limited log line. */
  readonly onRefusal?: (reason: RelayRefusal, detail: string) => void;
  /** Default RELAY_LIMITS (tests make them small). */
  readonly limits?: RelayLimits;
}

export interface DashboardRelay {
  /** "http://127.0.0.1:PORT". */
  readonly origin: string;
  /** The page's URL to give the user: http://127.0.0.1:PORT/dashboard?key=KEY. */
  readonly url: string;
  /** The name of the cookie the key is traded for. */
  readonly cookieName: string;
  readonly refused: Readonly<Record<RelayRefusal, number>>;
  /** Requests being relayed now. */
  readonly inFlight: number;
  close(): Promise<void>;
}

export async function startDashboardRelay(opts: DashboardRelayOptions): Promise<DashboardRelay> {
  const refused: Record<RelayRefusal, number> = {
    host: 0,
    key: 0,
    method: 0,
    body: 0,
    path: 0,
    'cross-site': 0,
    busy: 0,
    upstream: 0,
  };
  const limits = opts.limits ?? RELAY_LIMITS;
  let inFlight = 0;
  const controlOrigin = new URL(opts.api.base).origin;
  let hosts: ReadonlySet<string> = new Set();
  let origins: ReadonlySet<string> = new Set();
  let cookieName = '';
  const key = randomBytes(24).toString('base64url');
  const keyDigest = secretDigest(key);
  const isKey = (sent: string | null | undefined): boolean =>
    typeof sent === 'string' && sent !== '' && matchesSecret(sent, keyDigest);

  const refuse = (res: ServerResponse, status: number, reason: RelayRefusal, message: string): void => {
    refused[reason]++;
    opts.onRefusal?.(reason, message);
    answer(res, status, message, status === 405 ? { allow: 'GET, HEAD' } : {});
  };

  const server = http.createServer((req, res) => {
    const host = (req.headers.host ?? '').toLowerCase();
    if (!hosts.has(host)) return refuse(res, 403, 'host', `Host '${host.slice(0, 100)}' is not this relay's`);
    if (req.method !== 'GET' && req.method !== 'HEAD')
      return refuse(
        res,
        405,
        'method',
        `${String(req.method).slice(0, 20)} is not relayed (GET and HEAD only)`,
      );
    const length = req.headers['content-length'];
    if ((length !== undefined && length !== '0') || req.headers['transfer-encoding'] !== undefined)
      return refuse(res, 400, 'body', 'a request with a body is not relayed');
    const url = upstreamUrl(req.url ?? '', controlOrigin);
    if (url === null) return refuse(res, 400, 'path', 'only an origin-form request target is relayed');
    // The path as the control plane will see it (dot segments resolved, as URL does).
    const path = url.pathname;
    if (url.searchParams.has(KEY_PARAM)) {
      // The printed URL: its key becomes the cookie, and the address bar loses it.
      if (!isKey(url.searchParams.get(KEY_PARAM))) return refuse(res, 401, 'key', 'a wrong key');
      url.searchParams.delete(KEY_PARAM);
      res.writeHead(302, {
        location: url.pathname + url.search,
        'set-cookie': `${cookieName}=${key}; HttpOnly; SameSite=Strict; Path=/`,
        'cache-control': 'no-store',
      });
      res.end();
      return;
    }
    if (!isKey(cookieOf(req.headers.cookie, cookieName)))
      return refuse(res, 401, 'key', 'no key: open the URL `trellis dashboard` printed');
    if (path === '/') {
      res.writeHead(302, { location: '/dashboard' });
      res.end();
      return;
    }
    const page = path === '/dashboard' || path.startsWith('/dashboard/');
    if (!page && !path.startsWith('/api/'))
      return refuse(res, 404, 'path', `${path.slice(0, 100)} is not relayed (/dashboard and /api/* only)`);
    if (!page && crossSite(req, origins))
      return refuse(res, 403, 'cross-site', `a cross-site read of ${path.slice(0, 100)} is not relayed`);
    if (inFlight >= limits.maxInFlight)
      return refuse(res, 503, 'busy', `${limits.maxInFlight} requests are being relayed already`);
    inFlight++;
    res.once('close', () => inFlight--);
    relay(opts.api, req.method, url, res, limits).catch(() => {
      refused.upstream++;
      if (!res.headersSent) answer(res, 502, 'the control plane could not be reached');
      else res.destroy();
    });
  });
  // A client must send its request head in time; the relay holds few connections.
  server.headersTimeout = 10_000;
  server.requestTimeout = 15_000;
  server.keepAliveTimeout = 5_000;
  server.maxConnections = 2 * limits.maxInFlight;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  hosts = new Set([`127.0.0.1:${port}`, `localhost:${port}`]);
  origins = new Set([...hosts].map((h) => `http://${h}`));
  // Per port: cookies of 127.0.0.1 are shared by all its ports.
  cookieName = `trellis-dashboard-${port}`;
  return {
    origin: `http://127.0.0.1:${port}`,
    url: `http://127.0.0.1:${port}/dashboard?${KEY_PARAM}=${key}`,
    cookieName,
    refused,
    get inFlight() {
      return inFlight;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

/**
 * The control plane's URL for a request target, or null unless it is origin-form ("/path?query")
 * and stays on the control plane once parsed ("//host" or "/\\host" would name another host).
 */
export function upstreamUrl(target: string, controlOrigin: string): URL | null {
  if (!target.startsWith('/') || target.startsWith('//') || target.includes('\\')) return null;
  if (!URL.canParse(target, controlOrigin)) return null;
  const url = new URL(target, controlOrigin);
  return url.origin === controlOrigin ? url : null;
}

/** The value of cookie `name` in a Cookie header, or null. */
export function cookieOf(header: string | undefined, name: string): string | null {
  if (header === undefined) return null;
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq !== -1 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return null;
}

/** Whether a browser says the request comes from another site's page. */
function crossSite(req: IncomingMessage, origins: ReadonlySet<string>): boolean {
  const origin = req.headers.origin;
  if (origin !== undefined && !origins.has(origin.toLowerCase())) return true;
  const site = req.headers['sec-fetch-site'];
  return site !== undefined && site !== 'same-origin' && site !== 'none';
}

/** One request relayed to the control plane; the answer streams back to `res`. */
async function relay(
  api: ControlApi,
  method: 'GET' | 'HEAD',
  url: URL,
  res: ServerResponse,
  limits: RelayLimits,
): Promise<void> {
  const path = url.pathname;
  const headers = await requestHeaders(api, method, path);
  if (res.destroyed) return;
  await new Promise<void>((resolve, reject) => {
    const upstream = http.request(url, { method, headers: { accept: '*/*', ...headers }, agent: false });
    const streaming = STREAMING_PATHS.has(path);
    let total: NodeJS.Timeout | null = null;
    const headTimer = setTimeout(
      () => upstream.destroy(new Error('no answer in time')),
      limits.headTimeoutMs,
    );
    const done = (): void => {
      clearTimeout(headTimer);
      if (total !== null) clearTimeout(total);
    };
    upstream.on('response', (answer) => {
      clearTimeout(headTimer);
      if (!streaming) total = setTimeout(() => upstream.destroy(), limits.totalTimeoutMs);
      const passed: Record<string, string | string[]> = {};
      for (const name of PASSED_HEADERS) {
        const value = answer.headers[name];
        if (value !== undefined) passed[name] = value;
      }
      res.writeHead(answer.statusCode ?? 502, passed);
      answer.pipe(res);
      answer.once('error', () => res.destroy());
      answer.once('end', () => {
        done();
        resolve();
      });
      answer.once('close', done);
    });
    upstream.once('error', (err) => {
      done();
      reject(err);
    });
    // The browser went away (the page changed, the tap stopped): so does the upstream request.
    res.once('close', () => {
      done();
      upstream.destroy();
      resolve();
    });
    upstream.end();
  });
}

function answer(
  res: ServerResponse,
  status: number,
  message: string,
  extra: Record<string, string> = {},
): void {
  res.writeHead(status, {
    'content-type': 'application/json',
    'x-content-type-options': 'nosniff',
    'cache-control': 'no-store',
    ...extra,
  });
  res.end(JSON.stringify({ error: `trellis dashboard: ${message}` }) + '\n');
}
