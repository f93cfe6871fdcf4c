// The Destination gRPC service (src/api/destination.proto): each Watch call names a target, which
// becomes a watcher subscription whose updates reach the caller through its own bounded queue
// (translator.ts). A service name in any of its DNS forms becomes the service port it names. An
// address ("IP:port", the original destination of a transparently proxied connection) becomes an
// address subscription (Watcher.subscribeAddress): a ClusterIP is its service port, a pod or
// workload address that endpoint, meshed or not; any other address (or every address, with a
// watcher that cannot look addresses up) is answered with itself, unmeshed.
import { isIP } from 'node:net';
import * as grpc from '@grpc/grpc-js';
import { loadDestinationApi, type ApiUpdate, type DestinationHandlers } from '../../api/load.ts';
import { silentLogger, type Logger } from '../../core/log.ts';
import { parseAuthority } from '../../core/target.ts';
import {
  plainEndpoint,
  type ServicePortKey,
  type Update,
  type Subscription,
  type Watcher,
} from '../discovery/watcher.ts';
import { SubscriberQueue } from './translator.ts';
import type { StreamLimit } from '../watch-limits.ts';
import { DEFAULT_GRPC_CONNECTION_LIMITS, listenGrpc, type GrpcConnectionLimits } from '../grpc-listener.ts';

export interface DestinationServiceOptions {
  readonly watcher: Watcher;
  /** The cluster's DNS suffix after "svc". Default "cluster.local". */
  readonly clusterDomain?: string;
  /** Per-subscriber queue (see translator.ts). Default 100. */
  readonly queueCapacity?: number;
  readonly log?: Logger;
  /** The bound on open Watch streams (the control plane's WatchLimits); none when absent. */
  readonly limit?: StreamLimit;
}

/**
 * The largest message any control-plane gRPC method takes (grpc-js's default is 4 MiB): the OTLP
 * export's 1 MiB bound and its framing; a CSR or a watch request is a few KB. Larger ones are
 * refused with RESOURCE_EXHAUSTED before they are decoded.
 */
export const MAX_GRPC_MESSAGE_BYTES = (1 << 20) + 4096;

export type DestinationTarget =
  | { readonly kind: 'service'; readonly key: ServicePortKey }
  | { readonly kind: 'address'; readonly host: string; readonly port: number };

/**
 * Parses a Watch path: "name.ns.svc.<clusterDomain>:port", "name.ns.svc:port", "name.ns:port" or
 * "IP:port" ("[v6]:port"). Null when it is none of these.
 */
export function parseDestinationPath(
  path: string,
  clusterDomain = 'cluster.local',
): DestinationTarget | null {
  const target = parseAuthority(path, 0);
  if (target === null || target.port === 0) return null;
  if (isIP(target.host) !== 0) return { kind: 'address', host: target.host, port: target.port };
  let host = target.host.toLowerCase().replace(/\.$/, '');
  for (const suffix of [`.svc.${clusterDomain.toLowerCase()}`, '.svc']) {
    if (host.endsWith(suffix)) {
      host = host.slice(0, -suffix.length);
      break;
    }
  }
  const labels = host.split('.');
  const dnsLabel = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
  if (labels.length !== 2 || !labels.every((l) => dnsLabel.test(l))) return null;
  const [name, namespace] = labels as [string, string];
  return { kind: 'service', key: { namespace, name, port: target.port } };
}

/** A running service: `closeStreams` ends every open Watch (UNAVAILABLE) and drops its subscription. */
export interface DestinationServiceHandle {
  readonly openStreams: number;
  closeStreams(): void;
}

/** Adds the Destination service to `server` (which may host the other control-plane APIs too). */
export function addDestinationService(
  server: grpc.Server,
  options: DestinationServiceOptions,
): DestinationServiceHandle {
  const log = (options.log ?? silentLogger).child({ component: 'destination' });
  const clusterDomain = options.clusterDomain ?? 'cluster.local';
  const open = new Set<() => void>();

  const handlers: DestinationHandlers = {
    Watch(call) {
      const path = call.request.path;
      const target = parseDestinationPath(path, clusterDomain);
      if (target === null) {
        call.emit('error', {
          code: grpc.status.INVALID_ARGUMENT,
          details: `"${path}" is not name.namespace[.svc[.${clusterDomain}]]:port or IP:port`,
        });
        return;
      }
      let release: (() => void) | null = null;
      if (options.limit !== undefined) {
        release = options.limit.admit(call, (status) => end(status.code, status.details));
        if (release === null) return;
      }
      let subscription: Subscription | null = null;
      let ended = false;
      const end = (code: grpc.status, details: string): void => {
        if (ended) return;
        ended = true;
        release?.();
        open.delete(stop);
        queue.close();
        subscription?.unsubscribe();
        if (!call.cancelled) call.emit('error', { code, details });
      };
      const stop = (): void => end(grpc.status.UNAVAILABLE, 'the destination service is shutting down');
      const queue = new SubscriberQueue(
        {
          write: (message: ApiUpdate) => call.write(message),
          onceDrain: (callback) => call.once('drain', callback),
        },
        {
          capacity: options.queueCapacity,
          onOverflow: () => {
            log.warn('a watcher fell too far behind; closing its stream', { path, peer: call.getPeer() });
            end(grpc.status.RESOURCE_EXHAUSTED, 'too far behind: reconnect for a fresh reset');
          },
        },
      );
      open.add(stop);
      call.on('cancelled', () => end(grpc.status.CANCELLED, 'cancelled'));
      call.on('error', () => end(grpc.status.UNKNOWN, 'stream error'));
      log.debug('watch', { path, peer: call.getPeer() });
      const push = (update: Update): void => queue.push(update);
      if (target.kind === 'service') {
        subscription = options.watcher.subscribe(target.key, push);
      } else if (options.watcher.subscribeAddress !== undefined) {
        subscription = options.watcher.subscribeAddress({ host: target.host, port: target.port }, push);
      } else {
        // The address is its own (only) endpoint; it never changes.
        push({ kind: 'reset', endpoints: [plainEndpoint(target)] });
      }
    },
  };
  server.addService(loadDestinationApi().Destination.service, handlers);
  return {
    get openStreams() {
      return open.size;
    },
    closeStreams() {
      for (const stop of Array.from(open)) stop();
    },
  };
}

export interface DestinationServer {
  /** The port it listens on (the one asked for, or the one the system chose for port 0). */
  readonly port: number;
  readonly service: DestinationServiceHandle;
  /** The port's connection metrics (grpc-listener.ts). */
  metrics(): string;
  /** Ends every stream and stops the server. Idempotent. */
  close(): Promise<void>;
}

/** Starts a gRPC server with the Destination service on `listen` ("127.0.0.1:0", "0.0.0.0:8086"). */
export async function startDestinationServer(
  options: DestinationServiceOptions & {
    readonly listen: string;
    /** Adds the other control-plane services (Identity, Policy) to the same server before it binds. */
    readonly addServices?: (server: grpc.Server) => void;
    /** What callers can hold of the port (default DEFAULT_GRPC_CONNECTION_LIMITS, grpc-listener.ts). */
    readonly connectionLimits?: GrpcConnectionLimits;
  },
): Promise<DestinationServer> {
  const limits = options.connectionLimits ?? DEFAULT_GRPC_CONNECTION_LIMITS;
  const server = new grpc.Server({
    'grpc.max_receive_message_length': MAX_GRPC_MESSAGE_BYTES,
    'grpc.max_connection_idle_ms': limits.idleMs,
  });
  const service = addDestinationService(server, options);
  options.addServices?.(server);
  const listener = await listenGrpc(server, options.listen, limits, options.log ?? silentLogger);
  let closing: Promise<void> | null = null;
  return {
    port: listener.port,
    service,
    metrics: () => listener.metrics(),
    close() {
      closing ??= new Promise<void>((resolve) => {
        listener.close();
        service.closeStreams();
        // The streams ended above still flush their status; cut whatever is left after a moment.
        const force = setTimeout(() => server.forceShutdown(), 1000);
        force.unref();
        server.tryShutdown(() => {
          clearTimeout(force);
          resolve();
        });
      });
      return closing;
    },
  };
}
