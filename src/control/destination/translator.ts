// Turns a watcher's updates (reset / add / remove / does-not-exist) into Destination API messages
// for one subscriber, through a bounded queue (linkerd2's endpoint translator). Messages go to the
// subscriber's stream as fast as it takes them; while its stream pushes back they wait in the
// queue, and a subscriber that falls `capacity` messages behind is dropped (`onOverflow`: the
// server ends its stream with RESOURCE_EXHAUSTED) instead of slowing the watcher or the other
// subscribers. A dropped client reconnects and starts again from a fresh reset.
//
// Message mapping (see src/api/destination.proto):
//   reset with endpoints  -> add { endpoints } with reset = true
//   reset without any     -> no_endpoints { exists: true }
//   does-not-exist        -> no_endpoints { exists: false, ports } (ports: a service's, when it
//                            exists but not on the port asked for)
//   add / remove          -> add { endpoints } / remove { addresses }
import type { ApiEndpoint, ApiTcpAddress, ApiUpdate } from '../../api/load.ts';
import { parseAuthority } from '../../core/target.ts';
import type { Endpoint, ProtocolHint, Update } from '../../core/endpoints.ts';

/** Where a subscriber's messages go: a gRPC server stream, or a fake in tests. */
export interface UpdateSink {
  /** Sends one message; false when the sink's buffer is full (wait for `onceDrain`). */
  write(message: ApiUpdate): boolean;
  /** Calls `callback` once, when the sink can take more again. */
  onceDrain(callback: () => void): void;
}

export interface SubscriberQueueOptions {
  /** How many messages may wait for a slow subscriber before it is dropped. Default 100. */
  readonly capacity?: number;
  /** Called once when the subscriber falls too far behind; the queue is closed by then. */
  readonly onOverflow: () => void;
}

export const DEFAULT_QUEUE_CAPACITY = 100;

export class SubscriberQueue {
  readonly #sink: UpdateSink;
  readonly #capacity: number;
  readonly #onOverflow: () => void;
  #queue: ApiUpdate[] = [];
  #waitingForDrain = false;
  #closed = false;

  constructor(sink: UpdateSink, options: SubscriberQueueOptions) {
    this.#sink = sink;
    this.#capacity = Math.max(1, options.capacity ?? DEFAULT_QUEUE_CAPACITY);
    this.#onOverflow = options.onOverflow;
  }

  /** Messages waiting for the subscriber to catch up. */
  get pending(): number {
    return this.#queue.length;
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** The watcher's listener: translates and sends (or queues) one update. Never blocks. */
  push(update: Update): void {
    if (this.#closed) return;
    const message = toApiUpdate(update);
    if (!this.#waitingForDrain) {
      this.#send(message);
      return;
    }
    if (this.#queue.length >= this.#capacity) {
      this.close();
      this.#onOverflow();
      return;
    }
    this.#queue.push(message);
  }

  /** Drops anything queued; later pushes are ignored. Idempotent. */
  close(): void {
    this.#closed = true;
    this.#queue = [];
  }

  #send(message: ApiUpdate): void {
    if (this.#sink.write(message)) return;
    this.#waitingForDrain = true;
    this.#sink.onceDrain(() => this.#flush());
  }

  #flush(): void {
    this.#waitingForDrain = false;
    // Bounded by the queue's length; stops again as soon as the sink pushes back.
    while (!this.#closed && !this.#waitingForDrain && this.#queue.length > 0) {
      this.#send(this.#queue.shift() as ApiUpdate);
    }
  }
}

/** One watcher update as the Destination API message that carries it. */
export function toApiUpdate(update: Update): ApiUpdate {
  switch (update.kind) {
    case 'reset':
      return update.endpoints.length === 0
        ? { noEndpoints: { exists: true } }
        : { add: { endpoints: update.endpoints.map(toApiEndpoint) }, reset: true };
    case 'add':
      return { add: { endpoints: update.endpoints.map(toApiEndpoint) }, reset: false };
    case 'remove':
      return { remove: { addresses: update.addresses.flatMap(toApiAddress) } };
    case 'does-not-exist':
      return {
        noEndpoints: { exists: false, ...(update.ports?.length ? { ports: [...update.ports] } : {}) },
      };
  }
}

const API_HINTS: Record<ProtocolHint, 'UNKNOWN' | 'H2' | 'OPAQUE'> = {
  unknown: 'UNKNOWN',
  h2: 'H2',
  opaque: 'OPAQUE',
};

export function toApiEndpoint(endpoint: Endpoint): ApiEndpoint {
  return {
    address: { ip: endpoint.address.host, port: endpoint.address.port },
    weight: Number.isFinite(endpoint.weight) && endpoint.weight >= 1 ? Math.round(endpoint.weight) : 1,
    labels: { ...endpoint.labels },
    meshed: endpoint.meshed,
    identity: endpoint.identity ?? '',
    protocolHint: API_HINTS[endpoint.protocolHint] ?? 'UNKNOWN',
  };
}

/** An address key ("host:port", "[v6]:port") as a TcpAddress; none when it is not one. */
function toApiAddress(key: string): ApiTcpAddress[] {
  const target = parseAuthority(key, 0);
  return target === null || target.port === 0 ? [] : [{ ip: target.host, port: target.port }];
}
