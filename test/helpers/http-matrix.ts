// Shared pieces of the end-to-end HTTP tests: each test body is written once against `Fixture`
// and run over every transport (HTTP/1.1 and HTTP/2 on the inbound listener; HTTP/1.1 through the
// outbound listener as an HTTP proxy, absolute-form and inside a CONNECT tunnel; HTTP/2 inside a
// CONNECT tunnel). The upstream is a node:http or node:http2 (h2c) server whose handler a test
// swaps in, and which counts its connections; the client speaks the same protocol as the upstream.
import http from 'node:http';
import http2 from 'node:http2';
import net from 'node:net';
import { once } from 'node:events';
import { createHash } from 'node:crypto';
import { after, before, beforeEach, describe } from 'node:test';
import { startProxyProcess, type ProxyProcess } from './proxy-process.ts';

export type Transport = 'http1' | 'h2' | 'http1-absolute' | 'http1-connect' | 'h2-connect';
export const ALL_TRANSPORTS: readonly Transport[] = [
  'http1',
  'h2',
  'http1-absolute',
  'http1-connect',
  'h2-connect',
];
export const HTTP1_TRANSPORTS: readonly Transport[] = ['http1', 'http1-absolute', 'http1-connect'];

export function protocolOf(t: Transport): 'http1' | 'h2' {
  return t === 'h2' || t === 'h2-connect' ? 'h2' : 'http1';
}

/** The parts of node:http's and node:http2's compatibility request/response that tests use. */
export type UpRequest = http.IncomingMessage | http2.Http2ServerRequest;
export interface UpResponse {
  statusCode: number;
  setHeader(name: string, value: string | number | readonly string[]): void;
  writeHead(status: number, headers?: Record<string, string | number | string[]>): void;
  write(chunk: Buffer | string): boolean;
  end(chunk?: Buffer | string): void;
  addTrailers(trailers: Record<string, string>): void;
  writeEarlyHints(hints: Record<string, string | string[]>): void;
  once(event: 'drain' | 'close', fn: () => void): void;
}
export type Handler = (req: UpRequest, res: UpResponse) => void;

export interface Upstream {
  readonly protocol: 'http1' | 'h2';
  readonly port: number;
  /** TCP connections the upstream accepted so far. */
  readonly connections: number;
  handler: Handler;
  /** Called on 'checkContinue' (Expect: 100-continue); the default sends 100 and handles. */
  onCheckContinue: Handler | null;
  close(): Promise<void>;
}

export async function startUpstream(
  protocol: 'http1' | 'h2',
  handler: Handler = echoHandler,
): Promise<Upstream> {
  const sockets = new Set<net.Socket>();
  let connections = 0;
  const state = { handler, onCheckContinue: null as Handler | null };
  const onRequest = (req: UpRequest, res: unknown) => state.handler(req, res as UpResponse);
  const server: net.Server =
    protocol === 'http1'
      ? http.createServer({ maxHeaderSize: 128 * 1024, keepAliveTimeout: 30_000 }, onRequest)
      : http2.createServer(
          { maxHeaderListPairs: 512, settings: { maxHeaderListSize: 256 * 1024 } },
          onRequest,
        );
  server.on('checkContinue', (req: UpRequest, res: unknown) => {
    if (state.onCheckContinue !== null) state.onCheckContinue(req, res as UpResponse);
    else {
      (res as { writeContinue(): void }).writeContinue();
      state.handler(req, res as UpResponse);
    }
  });
  server.on('connection', (s: net.Socket) => {
    connections++;
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as net.AddressInfo).port;
  return {
    protocol,
    port,
    get connections() {
      return connections;
    },
    get handler() {
      return state.handler;
    },
    set handler(h: Handler) {
      state.handler = h;
    },
    get onCheckContinue() {
      return state.onCheckContinue;
    },
    set onCheckContinue(h: Handler | null) {
      state.onCheckContinue = h;
    },
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** Reads a whole upstream request body. */
export async function readBody(req: UpRequest): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const chunk of req as AsyncIterable<Buffer>) parts.push(chunk);
  return Buffer.concat(parts);
}

/** Request headers without HTTP/2 pseudo-headers. */
export function plainHeaders(req: UpRequest): Record<string, string | string[] | undefined> {
  const out: Record<string, string | string[] | undefined> = {};
  for (const [k, v] of Object.entries(req.headers)) if (!k.startsWith(':')) out[k] = v;
  return out;
}

/** Default handler: answers JSON describing the request (the body itself only when small). */
export function echoHandler(req: UpRequest, res: UpResponse): void {
  readBody(req).then(
    (body) => {
      const json = JSON.stringify({
        method: req.method,
        url: req.url,
        headers: plainHeaders(req),
        trailers: req.trailers,
        bodyLength: body.length,
        bodySha256: sha256(body),
        body: body.length <= 4096 ? body.toString('latin1') : null,
      });
      res.setHeader('content-type', 'application/json');
      res.setHeader('content-length', Buffer.byteLength(json));
      res.end(json);
    },
    () => {},
  );
}

export interface EchoedRequest {
  method: string;
  url: string;
  headers: Record<string, string | string[] | undefined>;
  trailers: Record<string, string>;
  bodyLength: number;
  bodySha256: string;
  body: string | null;
}

export function sha256(b: Buffer): string {
  return createHash('sha256').update(b).digest('hex');
}

/** Closes the connection a request arrived on, abruptly. */
export function abortUpstreamConnection(req: UpRequest): void {
  if ('stream' in req) req.stream.session?.destroy();
  else req.socket.destroy();
}

// ---- client ---------------------------------------------------------------------------------

export interface ClientRequest {
  method?: string;
  path: string;
  headers?: Record<string, string | string[]>;
  /** A Buffer/string is sent with Content-Length; an array is written chunk by chunk without it. */
  body?: Buffer | string | Buffer[];
  trailers?: Record<string, string>;
  /** Send `Expect: 100-continue` and the body only after the 100 arrives. */
  expectContinue?: boolean;
}

export interface ClientReply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
  trailers: Record<string, string | string[] | undefined>;
  informational: { status: number; headers: Record<string, unknown> }[];
  /** A 100 Continue arrived before the body was sent (expectContinue). */
  continued: boolean;
}

export interface Client {
  request(req: ClientRequest): Promise<ClientReply>;
  /** Resolves when the client's (current) connection closes. */
  connectionClosed(): Promise<void>;
  close(): void;
}

export interface Fixture {
  readonly transport: Transport;
  readonly protocol: 'http1' | 'h2';
  readonly proxy: ProxyProcess;
  readonly upstream: Upstream;
  /** A new client with its own connection(s) to the proxy. */
  client(): Promise<Client>;
}

export interface FixtureOptions {
  proxyArgs?: string[];
  /** Where inbound traffic goes (default: the upstream); e.g. a closed port. */
  appPort?: number;
  /** Where outbound (absolute-form / CONNECT) traffic goes (default: the upstream). */
  targetPort?: number;
}

export async function startFixture(
  transport: Transport,
  opts: FixtureOptions = {},
): Promise<Fixture & { close(): Promise<void> }> {
  const protocol = protocolOf(transport);
  const upstream = await startUpstream(protocol);
  let proxy: ProxyProcess;
  try {
    proxy = await startProxyProcess({
      args: ['--app-port', String(opts.appPort ?? upstream.port), ...(opts.proxyArgs ?? [])],
    });
  } catch (err) {
    await upstream.close();
    throw err;
  }
  const targetPort = opts.targetPort ?? upstream.port;
  const clients = new Set<Client>();
  return {
    transport,
    protocol,
    proxy,
    upstream,
    async client() {
      const c =
        protocol === 'http1'
          ? newH1Client(transport, proxy, targetPort)
          : await newH2Client(transport, proxy, targetPort);
      clients.add(c);
      return c;
    },
    async close() {
      for (const c of clients) c.close();
      await proxy.stop();
      await upstream.close();
    },
  };
}

/** Runs `body` as a describe block per transport, each with its own proxy and upstream. */
export function forEachTransport(
  transports: readonly Transport[],
  body: (fx: () => Fixture, transport: Transport) => void,
  opts: FixtureOptions = {},
): void {
  for (const transport of transports) {
    describe(transport, () => {
      let fx: (Fixture & { close(): Promise<void> }) | null = null;
      before(async () => {
        fx = await startFixture(transport, opts);
      });
      after(async () => {
        await fx?.close();
      });
      beforeEach(() => {
        if (fx === null) return;
        fx.upstream.handler = echoHandler;
        fx.upstream.onCheckContinue = null;
      });
      body(() => {
        if (fx === null) throw new Error('fixture not started');
        return fx;
      }, transport);
    });
  }
}

/** Opens a CONNECT tunnel through the outbound listener; resolves with the tunnelled socket. */
export function openTunnel(proxyPort: number, targetPort: number, extraHead = ''): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect(proxyPort, '127.0.0.1');
    let buf = Buffer.alloc(0);
    const timer = setTimeout(() => fail(new Error('CONNECT timed out')), 5000);
    const fail = (err: Error) => {
      clearTimeout(timer);
      s.destroy();
      reject(err);
    };
    const onData = (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      const end = buf.indexOf('\r\n\r\n');
      if (end === -1) return;
      clearTimeout(timer);
      s.removeListener('data', onData);
      s.removeListener('error', fail);
      s.pause();
      const head = buf.subarray(0, end).toString('latin1');
      if (!/^HTTP\/1\.1 200/.test(head)) return fail(new Error(`CONNECT refused: ${head}`));
      if (end + 4 < buf.length) s.unshift(buf.subarray(end + 4));
      resolve(s);
    };
    s.on('data', onData);
    s.on('error', fail);
    s.write(`CONNECT 127.0.0.1:${targetPort} HTTP/1.1\r\nHost: 127.0.0.1:${targetPort}\r\n${extraHead}\r\n`);
  });
}

function newH1Client(transport: Transport, proxy: ProxyProcess, targetPort: number): Client {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  if (transport === 'http1-connect') {
    const outbound = proxy.port('outbound');
    (agent as unknown as { createConnection: unknown }).createConnection = (
      _opts: unknown,
      cb: (err: Error | null, s?: net.Socket) => void,
    ) => {
      openTunnel(outbound, targetPort).then(
        (s) => {
          cb(null, s);
          s.resume(); // node:http's client does not resume a socket it is handed paused
        },
        (err: Error) => cb(err),
      );
      return undefined;
    };
  }
  let current: net.Socket | null = null;
  let closed: Promise<void> = Promise.resolve();
  const base =
    transport === 'http1-absolute'
      ? { host: '127.0.0.1', port: proxy.port('outbound'), prefix: `http://127.0.0.1:${targetPort}` }
      : transport === 'http1-connect'
        ? { host: '127.0.0.1', port: targetPort, prefix: '' }
        : { host: '127.0.0.1', port: proxy.port('inbound'), prefix: '' };
  return {
    request(r) {
      return new Promise<ClientReply>((resolve, reject) => {
        const headers: Record<string, string | string[]> = { ...r.headers };
        const body = r.body;
        if (typeof body === 'string' || Buffer.isBuffer(body))
          headers['content-length'] = String(Buffer.byteLength(body));
        if (r.expectContinue === true) headers['expect'] = '100-continue';
        const req = http.request({
          agent,
          host: base.host,
          port: base.port,
          method: r.method ?? 'GET',
          path: base.prefix + r.path,
          headers,
        });
        const reply: ClientReply = {
          status: 0,
          headers: {},
          body: Buffer.alloc(0),
          trailers: {},
          informational: [],
          continued: false,
        };
        req.on('socket', (s: net.Socket) => {
          if (s !== current) {
            current = s;
            closed = once(s, 'close').then(() => undefined);
          }
        });
        req.on('information', (info) =>
          reply.informational.push({ status: info.statusCode, headers: info.headers }),
        );
        req.on('error', reject);
        req.on('response', (res) => {
          reply.status = res.statusCode ?? 0;
          reply.headers = res.headers;
          const parts: Buffer[] = [];
          res.on('data', (d: Buffer) => parts.push(d));
          res.on('error', reject);
          res.on('close', () => {
            if (!res.complete) return reject(new Error('response incomplete'));
            reply.body = Buffer.concat(parts);
            reply.trailers = res.trailers;
            resolve(reply);
          });
        });
        const sendBody = () => {
          if (Array.isArray(body)) for (const chunk of body) req.write(chunk);
          else if (body !== undefined) req.write(body);
          if (r.trailers !== undefined) req.addTrailers(r.trailers);
          req.end();
        };
        if (r.expectContinue === true) {
          req.flushHeaders();
          req.on('continue', () => {
            reply.continued = true;
            sendBody();
          });
        } else sendBody();
      });
    },
    connectionClosed: () => closed,
    close: () => agent.destroy(),
  };
}

async function newH2Client(transport: Transport, proxy: ProxyProcess, targetPort: number): Promise<Client> {
  let session: http2.ClientHttp2Session;
  if (transport === 'h2-connect') {
    const tunnel = await openTunnel(proxy.port('outbound'), targetPort);
    session = http2.connect(`http://127.0.0.1:${targetPort}`, { createConnection: () => tunnel });
  } else {
    session = http2.connect(`http://127.0.0.1:${proxy.port('inbound')}`);
  }
  session.on('error', () => {});
  const closed = once(session, 'close').then(() => undefined);
  return {
    request(r) {
      return new Promise<ClientReply>((resolve, reject) => {
        const body = r.body;
        const headers: http2.OutgoingHttpHeaders = {
          ':method': r.method ?? 'GET',
          ':path': r.path,
          ...r.headers,
        };
        if (typeof body === 'string' || Buffer.isBuffer(body))
          headers['content-length'] = Buffer.byteLength(body);
        if (r.expectContinue === true) headers['expect'] = '100-continue';
        const noBody = body === undefined && r.trailers === undefined;
        const stream = session.request(headers, {
          endStream: noBody,
          waitForTrailers: r.trailers !== undefined,
        });
        const reply: ClientReply = {
          status: 0,
          headers: {},
          body: Buffer.alloc(0),
          trailers: {},
          informational: [],
          continued: false,
        };
        const parts: Buffer[] = [];
        let ended = false;
        stream.on('headers', (h) => reply.informational.push({ status: Number(h[':status']), headers: h }));
        stream.on('response', (h) => {
          reply.status = Number(h[':status']);
          reply.headers = h;
        });
        stream.on('trailers', (t) => (reply.trailers = t));
        stream.on('data', (d: Buffer) => parts.push(d));
        stream.on('end', () => (ended = true));
        stream.on('error', reject);
        stream.on('close', () => {
          if (
            !ended ||
            reply.status === 0 ||
            (stream.rstCode !== undefined && stream.rstCode !== 0 && !ended)
          )
            return reject(new Error(`stream closed early (rst ${stream.rstCode})`));
          reply.body = Buffer.concat(parts);
          resolve(reply);
        });
        if (r.trailers !== undefined) stream.on('wantTrailers', () => stream.sendTrailers(r.trailers!));
        const sendBody = () => {
          if (Array.isArray(body)) for (const chunk of body) stream.write(chunk);
          else if (body !== undefined) stream.write(body);
          if (!noBody) stream.end();
        };
        if (r.expectContinue === true) {
          stream.on('continue', () => {
            reply.continued = true;
            sendBody();
          });
        } else sendBody();
      });
    },
    connectionClosed: () => closed,
    close: () => session.destroy(),
  };
}

// ---- raw HTTP/1 connections (for what node:http's client will not send or hides) ------------

/** A raw connection that keeps everything it receives, for tests that write HTTP/1 by hand. */
export class RawConn {
  readonly socket: net.Socket;
  data = '';
  closed = false;
  private notify: (() => void) | null = null;

  constructor(socket: net.Socket) {
    this.socket = socket;
    socket.setEncoding('latin1');
    socket.on('data', (d: string) => {
      this.data += d;
      this.notify?.();
    });
    socket.on('error', () => {});
    socket.on('close', () => {
      this.closed = true;
      this.notify?.();
    });
    socket.resume();
  }

  write(s: string): void {
    this.socket.write(s, 'latin1');
  }

  /** Waits (bounded) until `pred` holds; rejects with what arrived so far on timeout. */
  waitFor(pred: (c: RawConn) => boolean, timeoutMs = 3000): Promise<void> {
    if (pred(this)) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.notify = null;
        reject(
          new Error(`timed out; received ${JSON.stringify(this.data.slice(0, 500))}, closed=${this.closed}`),
        );
      }, timeoutMs);
      this.notify = () => {
        if (!pred(this)) return;
        clearTimeout(timer);
        this.notify = null;
        resolve();
      };
    });
  }

  /** Waits for one whole response (Content-Length or chunked framing, or up to close) and consumes it. */
  async response(timeoutMs = 3000): Promise<RawResponse> {
    let parsed: RawResponse | null = null;
    await this.waitFor((c) => (parsed = parseRawResponse(c.data, c.closed)) !== null, timeoutMs);
    const r = parsed as unknown as RawResponse;
    this.data = this.data.slice(r.length);
    return r;
  }

  close(): void {
    this.socket.destroy();
  }
}

export interface RawResponse {
  status: number;
  /** Header names lower-cased; repeated fields joined with ", ". */
  headers: Record<string, string>;
  head: string;
  body: string;
  /** How the body was framed. */
  framing: 'length' | 'chunked' | 'close' | 'none';
  /** Characters of the stream this response took. */
  length: number;
}

/** Parses one HTTP/1 response at the start of `text`; null while incomplete. */
export function parseRawResponse(text: string, closed: boolean, noBody = false): RawResponse | null {
  const headEnd = text.indexOf('\r\n\r\n');
  if (headEnd === -1) return null;
  const head = text.slice(0, headEnd);
  const lines = head.split('\r\n');
  const status = Number(lines[0]!.split(' ')[1]);
  const headers: Record<string, string> = {};
  for (const line of lines.slice(1)) {
    const i = line.indexOf(':');
    const name = line.slice(0, i).toLowerCase();
    const value = line.slice(i + 1).trim();
    headers[name] = headers[name] === undefined ? value : `${headers[name]}, ${value}`;
  }
  const start = headEnd + 4;
  const base = { status, headers, head };
  if (noBody || status < 200 || status === 204 || status === 304)
    return { ...base, body: '', framing: 'none', length: start };
  if (headers['transfer-encoding'] !== undefined) {
    let pos = start;
    let body = '';
    for (;;) {
      const lineEnd = text.indexOf('\r\n', pos);
      if (lineEnd === -1) return null;
      const size = parseInt(text.slice(pos, lineEnd), 16);
      if (size === 0) {
        const end = text.indexOf('\r\n\r\n', lineEnd);
        if (end === -1) return null;
        return { ...base, body, framing: 'chunked', length: end + 4 };
      }
      if (text.length < lineEnd + 2 + size + 2) return null;
      body += text.slice(lineEnd + 2, lineEnd + 2 + size);
      pos = lineEnd + 2 + size + 2;
    }
  }
  if (headers['content-length'] !== undefined) {
    const n = Number(headers['content-length']);
    if (text.length < start + n) return null;
    return { ...base, body: text.slice(start, start + n), framing: 'length', length: start + n };
  }
  if (!closed) return null;
  return { ...base, body: text.slice(start), framing: 'close', length: text.length };
}

/** A raw connection through the fixture's transport (HTTP/1 transports only), and the request-target for a path. */
export async function rawConnection(fx: Fixture): Promise<{ conn: RawConn; target(path: string): string }> {
  const port = fx.upstream.port;
  let socket: net.Socket;
  let prefix = '';
  switch (fx.transport) {
    case 'http1':
      socket = net.connect(fx.proxy.port('inbound'), '127.0.0.1');
      break;
    case 'http1-absolute':
      socket = net.connect(fx.proxy.port('outbound'), '127.0.0.1');
      prefix = `http://127.0.0.1:${port}`;
      break;
    case 'http1-connect':
      socket = await openTunnel(fx.proxy.port('outbound'), port);
      break;
    default:
      throw new Error(`no raw HTTP/1 connection over ${fx.transport}`);
  }
  if (socket.connecting) await once(socket, 'connect');
  return { conn: new RawConn(socket), target: (p) => prefix + p };
}
