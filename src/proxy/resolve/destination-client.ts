// A Resolver over the control plane's Destination API (src/api/destination.proto): each
// resolution is one Watch stream, whose messages become reset / add / remove / does-not-exist
// updates. When the stream fails or ends, the resolver reports the error (the EndpointSet keeps
// its last known endpoints, so traffic keeps flowing while the control plane is away) and watches
// again after an exponential backoff with jitter; the first message of the new stream is a reset,
// which replaces whatever changed in between. All resolutions share one HTTP/2 channel, at the
// address the locator names (control-plane-address.ts): when the control plane restarts or moves,
// every watch starts again at once on a channel to where it is now; a channel whose connection
// failed is replaced rather than waited for (control-plane-client.ts). Each Watch is kept open by
// the shared loop (watch-stream.ts), with its backoff and log lines.
import * as grpc from '@grpc/grpc-js';
import {
  Destination,
  type ApiEndpointOutput,
  type ApiUpdateOutput,
  type DestinationClient,
  reconnectBackoffOptions,
} from '../../api/client.ts';
import { backoffSettings, WATCH_BACKOFF, type BackoffSettings } from '../../core/backoff.ts';
import type { Timers } from '../../core/clock.ts';
import { TrellisError } from '../../core/errors.ts';
import { silentLogger, type Logger } from '../../core/log.ts';
import { isPort } from '../../core/schema.ts';
import type { Random } from '../../core/random.ts';
import { targetKey } from '../../core/target.ts';
import { type ControlPlaneLocator, locateControlPlane } from './control-plane-address.ts';
import { ControlPlaneClient } from './control-plane-client.ts';
import type { Endpoint, ProtocolHint, Update } from '../../core/endpoints.ts';
import type { Resolution, Resolver } from './resolver.ts';
import { type WatchStream, watchStream } from './watch-stream.ts';

export interface DestinationResolverOptions {
  /** The control plane's gRPC address, "host:port". */
  readonly address: string;
  /** Where the control plane is now (default: the process's, see control-plane-address.ts). */
  readonly locator?: ControlPlaneLocator;
  /** Default: plaintext. */
  readonly credentials?: grpc.ChannelCredentials;
  /** Re-watch delays: from initialMs, doubling up to maxMs, each drawn in [delay/2, delay]. */
  readonly backoff?: { readonly initialMs?: number; readonly maxMs?: number };
  /** Extra gRPC channel options (keepalive, ...). */
  readonly channelOptions?: grpc.ChannelOptions;
  readonly timers?: Timers;
  readonly random?: Random;
  readonly log?: Logger;
}

/** The error a resolution reports when its stream to the control plane fails. */
export const DESTINATION_UNAVAILABLE = 'TRELLIS_ERR_DESTINATION_UNAVAILABLE';

export class DestinationResolver implements Resolver {
  readonly #client: ControlPlaneClient<DestinationClient>;
  readonly #backoff: BackoffSettings;
  readonly #timers: Timers | undefined;
  readonly #random: Random | undefined;
  readonly #log: Logger;
  readonly #watches = new Set<WatchStream>();
  #closed = false;

  constructor(options: DestinationResolverOptions) {
    this.#backoff = backoffSettings(options.backoff, WATCH_BACKOFF);
    this.#timers = options.timers;
    this.#random = options.random;
    this.#log = (options.log ?? silentLogger).child({ component: 'destination-client' });
    const credentials = options.credentials ?? grpc.credentials.createInsecure();
    const channelOptions = { ...reconnectBackoffOptions(this.#backoff), ...options.channelOptions };
    this.#client = new ControlPlaneClient(
      options.locator ?? locateControlPlane(options.address),
      (address) => new Destination(address, credentials, channelOptions),
    );
  }

  /** Open resolutions (tests check that cancel releases them). */
  get openResolutions(): number {
    return this.#watches.size;
  }

  resolve(target: string, onUpdate: (update: Update) => void, onError: (error: Error) => void): Resolution {
    if (this.#closed) {
      queueMicrotask(() =>
        onError(new TrellisError(DESTINATION_UNAVAILABLE, 'the destination resolver is closed')),
      );
      return { cancel: () => {} };
    }
    const watch = watchStream<ApiUpdateOutput>({
      name: 'destination watch',
      client: this.#client,
      open: () => this.#client.get().Watch({ path: target }),
      onMessage: (message) => {
        const update = fromApiUpdate(message);
        if (update === null) {
          this.#log.warn('control plane sent an update of an unknown kind; ignored', { target });
          return;
        }
        onUpdate(update);
      },
      onEnd: ({ reason, status }) =>
        onError(
          new TrellisError(DESTINATION_UNAVAILABLE, `watching ${target} failed (${reason}); retrying`, {
            cause: status,
          }),
        ),
      fields: { target },
      backoff: this.#backoff,
      timers: this.#timers,
      random: this.#random,
      log: this.#log,
    });
    this.#watches.add(watch);
    return {
      cancel: () => {
        this.#watches.delete(watch);
        watch.close();
      },
    };
  }

  /** Cancels every resolution and closes the channel. Idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const watch of this.#watches) watch.close();
    this.#watches.clear();
    this.#client.close();
  }
}

/** A Destination API message as a resolver update; null when it carries none of the known kinds. */
export function fromApiUpdate(message: ApiUpdateOutput): Update | null {
  switch (message.update) {
    case 'add': {
      const endpoints = (message.add?.endpoints ?? []).flatMap(fromApiEndpoint);
      return message.reset ? { kind: 'reset', endpoints } : { kind: 'add', endpoints };
    }
    case 'remove': {
      const addresses = (message.remove?.addresses ?? [])
        .filter((a) => isUsableAddress(a.ip, a.port))
        .map((a) => targetKey({ host: a.ip, port: a.port }));
      return { kind: 'remove', addresses };
    }
    case 'noEndpoints': {
      if (message.noEndpoints?.exists) return { kind: 'reset', endpoints: [] };
      const ports = (message.noEndpoints?.ports ?? []).filter(isPort);
      return ports.length > 0 ? { kind: 'does-not-exist', ports } : { kind: 'does-not-exist' };
    }
    default:
      return null;
  }
}

const HINTS: Record<string, ProtocolHint> = { UNKNOWN: 'unknown', H2: 'h2', OPAQUE: 'opaque' };

/** One API endpoint, or none when its address is unusable. */
function fromApiEndpoint(endpoint: ApiEndpointOutput): Endpoint[] {
  const address = endpoint.address;
  if (address === null || !isUsableAddress(address.ip, address.port)) return [];
  return [
    {
      address: { host: address.ip, port: address.port },
      weight: endpoint.weight > 0 ? endpoint.weight : 1,
      labels: { ...endpoint.labels },
      meshed: endpoint.meshed,
      identity: endpoint.identity === '' ? null : endpoint.identity,
      protocolHint: HINTS[endpoint.protocolHint] ?? 'unknown',
    },
  ];
}

function isUsableAddress(ip: string, port: number): boolean {
  return typeof ip === 'string' && ip.length > 0 && isPort(port);
}
