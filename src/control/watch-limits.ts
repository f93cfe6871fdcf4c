// The bound on the control plane's open watch streams (Destination.Watch, Policy.WatchInbound,
// Routes.Watch). Anyone who reaches the gRPC port may open them, and each holds a subscription and
// a queue until it is cancelled (about 14 KB per Destination watch, measured: 20,000 watches of
// made-up names took 283 MB). Past `max` open streams of one API a new one takes the place of the
// oldest stream of the client address that holds the most (ended with RESOURCE_EXHAUSTED), or is
// refused with RESOURCE_EXHAUSTED when its own address holds as many (fair-share.ts: one caller
// holding every stream kept every proxy from watching); either is counted
// (trellis_control_watch_streams_refused_total{api}) and logged at most once per 10 s. A proxy watches one policy, one
// route set and a destination per service it calls, so the default leaves a mesh of thousands of
// proxies its room.
import * as grpc from '@grpc/grpc-js';
import type { Logger } from '../core/log.ts';
import { LogThrottle } from '../core/log-rate-limit.ts';
import { Registry } from '../core/prometheus.ts';
import { addressOf, FairShare } from './fair-share.ts';

/** Most open streams of one watch API. */
export const MAX_WATCH_STREAMS = 10_000;

export interface StreamStatus {
  readonly code: grpc.status;
  readonly details: string;
}

/** Something a refusal can be sent on (a server stream). */
interface Refusable {
  emit(event: 'error', status: StreamStatus): boolean;
  getPeer(): string;
}

/** The limit of one API's streams, shared among client addresses (fair-share.ts). */
export class StreamLimit {
  readonly api: string;
  readonly max: number;
  /** Streams refused or ended to keep the limit so far. */
  refused = 0;
  private readonly log: Logger;
  private readonly throttle = new LogThrottle();
  private readonly share: FairShare;

  constructor(api: string, max: number, log: Logger) {
    this.api = api;
    this.max = max;
    this.log = log;
    this.share = new FairShare(max);
  }

  /**
   * Whether `call` may open: its release, to call when it ends; null when it was refused (counted,
   * logged, ended with RESOURCE_EXHAUSTED). To make room for it, the oldest stream of another
   * address that holds more may be ended: `evict` ends it (with the status given).
   */
  admit(call: Refusable, evict: (status: StreamStatus) => void): (() => void) | null {
    const release = this.share.take(addressOf(call.getPeer()), () => {
      this.note(call);
      evict(this.status('ended to make room for another client'));
    });
    if (release !== null) return release;
    this.note(call);
    call.emit('error', this.status('try again later'));
    return null;
  }

  private status(then: string): StreamStatus {
    return {
      code: grpc.status.RESOURCE_EXHAUSTED,
      details: `too many open ${this.api} watches (at most ${this.max}); ${then}`,
    };
  }

  private note(call: Refusable): void {
    this.refused++;
    this.throttle.note((skipped) =>
      this.log.warn('watch stream refused: too many open', {
        api: this.api,
        max: this.max,
        peer: call.getPeer(),
        unloggedBefore: skipped,
      }),
    );
  }
}

/** The limits of every watch API of one control plane, and their metric. */
export class WatchLimits {
  private readonly limits = new Map<string, StreamLimit>();
  private readonly log: Logger;
  private readonly max: number;

  constructor(log: Logger, max = MAX_WATCH_STREAMS) {
    this.log = log;
    this.max = max;
  }

  /** The limit of `api` ("destination", "policy", "route"). */
  of(api: string): StreamLimit {
    let limit = this.limits.get(api);
    if (limit === undefined) this.limits.set(api, (limit = new StreamLimit(api, this.max, this.log)));
    return limit;
  }

  metrics(): string {
    const registry = new Registry();
    const family = registry.counter(
      'trellis_control_watch_streams_refused_total',
      'Watch streams refused or ended because their API held its maximum of open streams: the new one, or the oldest of the client address holding the most.',
      ['api'],
    );
    for (const limit of this.limits.values()) family.labels(limit.api).inc(limit.refused);
    return registry.render();
  }
}
