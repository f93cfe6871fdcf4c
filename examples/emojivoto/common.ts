// What the emojivoto services share: where to listen, where the other services are, the gRPC
// definitions, and the ready line. Each service prints one JSON line on stdout once it listens,
// {"event":"ready","service":"emoji","listen":"127.0.0.1:N"}, and exits on SIGTERM/SIGINT (or when
// its stdin closes, with --exit-on-stdin-close).
//
// Where to listen: --listen HOST:PORT, or --port N, or the PORT env var (default 127.0.0.1:0).
// Where the others are, by name through the mesh (the default):
//   gRPC: targets like `emoji.emojivoto:8080`; grpc-js sends them through `grpc_proxy` (a CONNECT
//         to the name), which `trellis run` points at the sidecar;
//   HTTP: absolute-form requests (GET http://web.emojivoto:8080/api/list) sent to HTTP_PROXY.
// Or directly, without a mesh (tests, running by hand): EMOJI_ADDR / VOTING_ADDR / WEB_ADDR as
// HOST:PORT; a direct gRPC client then ignores any proxy env var.
import { once } from 'node:events';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';

export interface ServiceFlags {
  readonly host: string;
  readonly port: number;
  readonly exitOnStdinClose: boolean;
  /** Other `--name value` flags, by name. */
  readonly extra: ReadonlyMap<string, string>;
}

export function parseServiceFlags(argv: readonly string[], env = process.env): ServiceFlags {
  let host = '127.0.0.1';
  let port = env.PORT === undefined || env.PORT === '' ? 0 : Number(env.PORT);
  let exitOnStdinClose = false;
  const extra = new Map<string, string>();
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--exit-on-stdin-close') exitOnStdinClose = true;
    else if (arg === '--listen' && i + 1 < argv.length) {
      const listen = argv[++i]!;
      const colon = listen.lastIndexOf(':');
      host = listen.slice(0, colon).replace(/^\[|\]$/g, '') || host;
      port = Number(listen.slice(colon + 1));
    } else if (arg === '--port' && i + 1 < argv.length) port = Number(argv[++i]);
    else if (arg.startsWith('--') && i + 1 < argv.length) extra.set(arg.slice(2), argv[++i]!);
    else throw new Error(`unexpected argument ${arg}`);
  }
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`bad port ${port}`);
  return { host, port, exitOnStdinClose, extra };
}

/** The mesh names of the services (namespace emojivoto, port 8080), as in services.yaml. */
export const MESH_NAMES = {
  emoji: 'emoji.emojivoto:8080',
  voting: 'voting.emojivoto:8080',
  web: 'web.emojivoto:8080',
} as const;

/** Where to reach a service: directly at HOST:PORT (from `envVar`), or by its name through the mesh. */
export interface Peer {
  readonly target: string;
  readonly direct: boolean;
}

export function peer(service: keyof typeof MESH_NAMES, envVar: string, env = process.env): Peer {
  const direct = env[envVar];
  return direct !== undefined && direct !== ''
    ? { target: direct, direct: true }
    : { target: MESH_NAMES[service], direct: false };
}

/** The proxy an HTTP client sends absolute-form requests to (HOST:PORT), from HTTP_PROXY. */
export function httpProxyAddress(env = process.env): string | null {
  const value = env.HTTP_PROXY ?? env.http_proxy;
  if (value === undefined || value === '') return null;
  const url = new URL(value.includes('://') ? value : `http://${value}`);
  return url.host;
}

// The gRPC definitions, loaded once from emojivoto.proto beside this file.
const PROTO = fileURLToPath(new URL('./emojivoto.proto', import.meta.url));
const definition = protoLoader.loadSync(PROTO, { keepCase: false, defaults: true, longs: Number });
const pkg = (grpc.loadPackageDefinition(definition).emojivoto as grpc.GrpcObject).v1 as grpc.GrpcObject;
export const EmojiService = pkg.EmojiService as grpc.ServiceClientConstructor;
export const VotingService = pkg.VotingService as grpc.ServiceClientConstructor;

export interface Emoji {
  readonly unicode: string;
  readonly shortcode: string;
}

/** A client of `service` at `p`; direct clients never go through a proxy. */
export function grpcClient(service: grpc.ServiceClientConstructor, p: Peer): grpc.Client {
  const options: grpc.ChannelOptions = p.direct ? { 'grpc.enable_http_proxy': 0 } : {};
  return new service(p.target, grpc.credentials.createInsecure(), options);
}

// Trace context, carried as any instrumented app carries it: the fields of the request being
// served are sent on with every call made for it, so the proxies' spans of those calls join the
// request's trace (the sidecar's SERVER span, named as the parent in them, is the calls' parent).
// Without this each hop would start a trace of its own. W3C and both B3 forms; no tracing SDK.
const TRACE_FIELDS = [
  'traceparent',
  'tracestate',
  'b3',
  'x-b3-traceid',
  'x-b3-spanid',
  'x-b3-parentspanid',
  'x-b3-sampled',
  'x-b3-flags',
] as const;

/** The trace context of an incoming request, as gRPC metadata for the calls made to serve it. */
export function traceMetadata(headers: http.IncomingHttpHeaders): grpc.Metadata {
  const metadata = new grpc.Metadata();
  for (const name of TRACE_FIELDS) {
    const value = headers[name];
    if (typeof value === 'string') metadata.set(name, value);
  }
  return metadata;
}

/**
 * Calls a unary method with a deadline (and `metadata`: the trace context of the request it
 * serves); resolves with the response or rejects with a ServiceError.
 */
export function unary<Res>(
  client: grpc.Client,
  method: string,
  request: object,
  metadata = new grpc.Metadata(),
  timeoutMs = 5000,
): Promise<Res> {
  type UnaryMethod = (
    req: object,
    metadata: grpc.Metadata,
    opts: grpc.CallOptions,
    cb: (err: grpc.ServiceError | null, res?: Res) => void,
  ) => void;
  const call = (client as unknown as Record<string, UnaryMethod>)[method]!;
  return new Promise((resolve, reject) => {
    call.call(client, request, metadata.clone(), { deadline: Date.now() + timeoutMs }, (err, res) =>
      err !== null ? reject(err) : resolve(res as Res),
    );
  });
}

/** Prints the ready line, then stops on SIGTERM/SIGINT (or stdin closing, if asked) via `close`. */
function announceAndHandleStop(name: string, listen: string, flags: ServiceFlags, close: () => void): void {
  process.stdout.write(JSON.stringify({ event: 'ready', service: name, listen }) + '\n');
  let stopping = false;
  const stop = () => {
    if (stopping) return;
    stopping = true;
    close();
    setTimeout(() => process.exit(0), 2000).unref();
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
  if (flags.exitOnStdinClose) {
    process.stdin.on('end', stop);
    process.stdin.on('error', stop);
    process.stdin.resume();
  }
}

/** Serves HTTP on the flags' address with a ready line. */
export async function serveHttp(
  name: string,
  flags: ServiceFlags,
  handler: http.RequestListener,
): Promise<void> {
  const server = http.createServer({ keepAliveTimeout: 30_000 }, handler);
  server.listen(flags.port, flags.host);
  await once(server, 'listening');
  const a = server.address() as AddressInfo;
  announceAndHandleStop(name, hostPort(a.address, a.port), flags, () => {
    server.close(() => process.exit(0));
    server.closeAllConnections();
  });
}

/** Serves gRPC on the flags' address with a ready line. */
export async function serveGrpc(
  name: string,
  flags: ServiceFlags,
  service: grpc.ServiceDefinition,
  implementation: grpc.UntypedServiceImplementation,
): Promise<void> {
  const server = new grpc.Server();
  server.addService(service, implementation);
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync(hostPort(flags.host, flags.port), grpc.ServerCredentials.createInsecure(), (err, p) =>
      err !== null ? reject(err) : resolve(p),
    ),
  );
  announceAndHandleStop(name, hostPort(flags.host, port), flags, () => {
    server.tryShutdown(() => process.exit(0));
  });
}

function hostPort(host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}

/** Waits `ms` milliseconds. */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
