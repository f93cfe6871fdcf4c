// An echo app for the mesh conformance tests (test/e2e/conformance-mesh*.test.ts), in the manner of
// the Gateway API conformance echo server: it answers every request with what it received (its pod
// name and namespace, the method, the path, the Host, every request header). One port serves both
// HTTP/1 (a JSON body) and HTTP/2 with prior knowledge, as gRPC (the same JSON in the response
// header `x-echo-request`, grpc-status 0 in the trailers): the first bytes of a connection decide.
// Also the two clients the tests use: HTTP/1 through a client proxy's outbound listener (as an
// HTTP proxy, absolute-form) and gRPC-shaped HTTP/2 calls to a listener bound for a Service.
import http from 'node:http';
import http2 from 'node:http2';
import net from 'node:net';

/** What the echo app saw of one request. Header names lower case; repeated ones in order. */
export interface EchoRequest {
  readonly pod: string;
  readonly namespace: string;
  readonly protocol: 'http/1.1' | 'h2';
  readonly method: string;
  readonly path: string;
  readonly host: string;
  readonly headers: Record<string, string[]>;
}

export interface EchoApp {
  readonly port: number;
  close(): void;
}

const H2_PREFACE_START = Buffer.from('PRI ');

/** `port`: where it listens on 127.0.0.1 (default: a free port). */
export async function startEchoApp(pod: string, namespace: string, port = 0): Promise<EchoApp> {
  const h1 = http.createServer((req, res) => {
    const seen: EchoRequest = {
      pod,
      namespace,
      protocol: 'http/1.1',
      method: req.method ?? '',
      path: req.url ?? '',
      host: req.headers.host ?? '',
      headers: { ...req.headersDistinct } as Record<string, string[]>,
    };
    req.resume();
    req.on('end', () => {
      res.setHeader('content-type', 'application/json');
      res.setHeader('x-echo-pod', pod);
      res.end(JSON.stringify(seen));
    });
  });
  const h2 = http2.createServer();
  h2.on('stream', (stream, headers, _flags, rawHeaders: string[]) => {
    // From the raw list: node's header object joins repeated fields with ", ".
    const names: Record<string, string[]> = {};
    for (let i = 0; i + 1 < rawHeaders.length; i += 2) {
      const name = rawHeaders[i]!.toLowerCase();
      if (!name.startsWith(':')) (names[name] ??= []).push(rawHeaders[i + 1]!);
    }
    const seen: EchoRequest = {
      pod,
      namespace,
      protocol: 'h2',
      method: String(headers[':method']),
      path: String(headers[':path']),
      host: String(headers[':authority'] ?? ''),
      headers: names,
    };
    stream.on('error', () => {});
    stream.respond(
      {
        ':status': 200,
        'content-type': 'application/grpc',
        'x-echo-pod': pod,
        'x-echo-request': JSON.stringify(seen),
      },
      { waitForTrailers: true },
    );
    stream.on('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }));
    stream.resume();
    stream.end();
  });
  // node:http2 reads a socket's handle itself, so bytes already read cannot be handed back to it:
  // an HTTP/2 connection is piped to the HTTP/2 server's own listener instead.
  await new Promise<void>((resolve) => h2.listen(0, '127.0.0.1', resolve));
  const h2Port = (h2.address() as net.AddressInfo).port;
  const server = net.createServer((socket) => {
    socket.on('error', () => socket.destroy());
    socket.once('data', (first: Buffer) => {
      if (!first.subarray(0, H2_PREFACE_START.length).equals(H2_PREFACE_START)) {
        socket.pause();
        socket.unshift(first);
        h1.emit('connection', socket);
        socket.resume();
        return;
      }
      const inner = net.connect(h2Port, '127.0.0.1');
      inner.on('error', () => socket.destroy());
      socket.on('close', () => inner.destroy());
      inner.on('close', () => socket.destroy());
      inner.write(first);
      socket.pipe(inner).pipe(socket);
    });
  });
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    close: () => {
      server.close();
      h2.close();
      h1.closeAllConnections();
    },
  };
}

export interface Reply {
  readonly status: number;
  readonly headers: http.IncomingHttpHeaders;
  readonly body: string;
}

/**
 * A request through a client proxy's outbound listener `proxyPort`, as an app with HTTP_PROXY
 * sends it: absolute-form `http://HOST/PATH`, with `Host: HOST` unless `headers` give another.
 */
export function proxiedRequest(
  proxyPort: number,
  host: string,
  path: string,
  headers: Record<string, string> = {},
  agent: http.Agent | false = false,
): Promise<Reply> {
  const hasHost = Object.keys(headers).some((k) => k.toLowerCase() === 'host');
  return request(proxyPort, `http://${host}${path}`, hasHost ? headers : { host, ...headers }, agent);
}

/** A GET of `path` (origin-form) to a listener bound for one Service, as an app connected to its address. */
export function boundRequest(port: number, path: string, headers: Record<string, string>): Promise<Reply> {
  return request(port, path, headers, false);
}

/**
 * One request to 127.0.0.1:`port` with request-target `target` (absolute-form through a proxy's
 * outbound listener); `body` as a string is sent with a length, as a list of parts chunked.
 */
export function sendRequest(
  port: number,
  target: string,
  opts: { method?: string; body?: string | readonly string[]; headers?: Record<string, string> } = {},
): Promise<Reply> {
  return request(port, target, opts.headers ?? {}, false, opts.method, opts.body);
}

function request(
  port: number,
  target: string,
  headers: Record<string, string>,
  agent: http.Agent | false,
  method = 'GET',
  body?: string | readonly string[],
) {
  return new Promise<Reply>((resolve, reject) => {
    const req = http.request(
      { host: '127.0.0.1', port, path: target, method, headers, agent, timeout: 10_000 },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => (body += d));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
      },
    );
    req.on('timeout', () => req.destroy(new Error(`${target} timed out`)));
    req.on('error', reject);
    if (typeof body === 'object') {
      for (const part of body) req.write(part);
      req.end();
    } else req.end(body);
  });
}

/** The echo of a proxied reply, or null when the app did not answer it (a proxy-made reply). */
export function echoOf(reply: Reply): EchoRequest | null {
  if (reply.headers['x-echo-pod'] === undefined) return null;
  return JSON.parse(reply.body) as EchoRequest;
}

export interface GrpcReply {
  /** Response headers and trailers together. */
  readonly headers: Record<string, string>;
  /** The echo of the request, or null when the app did not answer it. */
  readonly echo: EchoRequest | null;
}

/** One gRPC-shaped call (POST, application/grpc, te: trailers) on an HTTP/2 `session`. */
export function grpcCall(
  session: http2.ClientHttp2Session,
  path: string,
  headers: Record<string, string> = {},
): Promise<GrpcReply> {
  return new Promise((resolve, reject) => {
    const req = session.request({
      ':method': 'POST',
      ':path': path,
      'content-type': 'application/grpc',
      te: 'trailers',
      ...headers,
    });
    const seen: Record<string, string> = {};
    const collect = (h: http2.IncomingHttpHeaders) => {
      for (const [k, v] of Object.entries(h)) seen[k] = String(v);
    };
    req.setTimeout(10_000, () => req.close(http2.constants.NGHTTP2_CANCEL));
    req.on('response', collect);
    req.on('trailers', collect);
    req.on('error', reject);
    req.on('close', () => {
      const echo = seen['x-echo-request'];
      resolve({ headers: seen, echo: echo === undefined ? null : (JSON.parse(echo) as EchoRequest) });
    });
    req.resume();
    req.end();
  });
}

/** The values of request header `name` the echo app got, joined with "," as the conformance suite compares them. */
export function headerOf(echo: EchoRequest, name: string): string | undefined {
  return echo.headers[name.toLowerCase()]?.join(',');
}
