// The injector's HTTPS server (`trellis control --injector-listen`): the API server POSTs an
// AdmissionReview v1 to /inject and gets admission.ts's answer. It answers every review, allowing
// the pod unchanged (with a warning) when it cannot inject: a body that is not JSON, a namespace
// it cannot look up in time. It never keeps the API server waiting past its own deadline (the
// webhook's timeoutSeconds is 10): the whole request, namespace lookup included, has 8 s. Bodies
// are read as the control plane's are (../http-bounds.ts readBody): over 4 MiB (the API server
// sends at most about 3) they are refused with 413 and `Connection: close`, which a client still
// uploading reads before the connection closes (answerAndClose); other paths get 404.
// Any pod can reach the injector's Service, so what a client can hold is bounded: at most
// INJECTOR_MAX_CONNECTIONS connections (more are closed at once), and a TLS handshake, like a
// request, gets the 8 s deadline (node's default handshake timeout is 120 s).
import { createServer, type Server } from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from '../../core/log.ts';
import { targetKey } from '../../core/target.ts';
import { answerAndClose, readBody } from '../http-bounds.ts';
import { listen } from '../server.ts';
import { review } from './admission.ts';
import type { InjectorConfig } from './proxy-containers.ts';

export const INJECT_PATH = '/inject';
const MAX_BODY_BYTES = 4 * 1024 * 1024;
const REQUEST_DEADLINE_MS = 8000;
const NAMESPACE_LOOKUP_MS = 3000;
/** Connections the injector holds at once (the API server uses a handful). */
export const INJECTOR_MAX_CONNECTIONS = 256;

export interface InjectorServerOptions {
  /** HOST:PORT (port 0: any free port). */
  readonly listen: string;
  readonly certPem: string;
  readonly keyPem: string;
  readonly config: InjectorConfig;
  /** The annotations of a namespace (the API server's, on Kubernetes). */
  readonly namespaceAnnotations: (namespace: string) => Promise<Record<string, string>>;
  readonly log: Logger;
}

export interface InjectorServer {
  /** HOST:PORT it listens on. */
  readonly address: string;
  close(): Promise<void>;
}

export async function startInjectorServer(options: InjectorServerOptions): Promise<InjectorServer> {
  const log = options.log.child({ component: 'injector' });
  const server: Server = createServer(
    {
      cert: options.certPem,
      key: options.keyPem,
      minVersion: 'TLSv1.2',
      handshakeTimeout: REQUEST_DEADLINE_MS,
    },
    (req, res) => void handle(req, res, options, log),
  );
  server.requestTimeout = REQUEST_DEADLINE_MS;
  server.headersTimeout = REQUEST_DEADLINE_MS;
  server.maxConnections = INJECTOR_MAX_CONNECTIONS;
  await listen(server, options.listen);
  const bound = server.address() as AddressInfo;
  const address = targetKey({ host: bound.address, port: bound.port });
  return {
    address,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

function send(res: ServerResponse, status: number, body: unknown): void {
  if (res.headersSent || res.destroyed) return;
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(body));
}

async function handle(
  req: IncomingMessage,
  res: ServerResponse,
  options: InjectorServerOptions,
  log: Logger,
): Promise<void> {
  const path = new URL(req.url ?? '/', 'https://injector').pathname;
  if (req.method !== 'POST' || path !== INJECT_PATH) {
    send(res, 404, { message: `only POST ${INJECT_PATH}` });
    req.resume();
    return;
  }
  const read = await readBody(req, MAX_BODY_BYTES);
  if (read === null) return; // the client went away
  if (read === 'too-large') {
    const message = JSON.stringify({ message: `the review is over ${MAX_BODY_BYTES} bytes` });
    answerAndClose(req, res, 413, { 'content-type': 'application/json' }, message);
    return;
  }
  let body: unknown = null;
  try {
    body = JSON.parse(read.toString('utf8'));
  } catch {
    // review() answers a body it cannot read: allowed unchanged, with a warning.
  }
  const namespace = (body as { request?: { namespace?: unknown } } | null)?.request?.namespace;
  let annotations: Record<string, string> = {};
  const warnings: string[] = [];
  if (typeof namespace === 'string' && namespace !== '') {
    try {
      annotations = await withTimeout(options.namespaceAnnotations(namespace), NAMESPACE_LOOKUP_MS);
    } catch (error) {
      log.warn('cannot read the namespace; deciding by the pod alone', {
        namespace,
        error: (error as Error).message,
      });
      warnings.push(
        `trellis injector: cannot read namespace ${namespace}; its annotations were not considered`,
      );
    }
  }
  const answer = review(body, annotations, options.config);
  if (warnings.length > 0) answer.response.warnings = [...(answer.response.warnings ?? []), ...warnings];
  for (const warning of answer.response.warnings ?? []) log.warn(warning, { namespace });
  send(res, 200, answer);
}

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}
