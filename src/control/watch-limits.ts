// The bound on the control plane's open watch streams (Destination.Watch, Policy.WatchInbound,
// Routes.Watch). Anyone who reaches the gRPC port may open them, and each holds a subscription and
// a queue until it is cancelled (about 14 KB per Destination watch, measured: 20,000 watches of
// made-up names took 283 MB). Past `max` open streams of one API a new one is refused with
// RESOURCE_EXHAUSTED, counted (trellis_control_watch_streams_refused_total{api}) and logged at
// most once per 10 s; the streams already open are untouched. A proxy watches one policy, one
// route set and a destination per service it calls, so the default leaves a mesh of thousands of
// proxies its room.
import * as grpc from '@grpc/grpc-js';
import type { Logger } from '../core/log.ts';
import { LogThrottle } from '../core/log-rate-limit.ts';
import { Registry } from '../core/prometheus.ts';

/** Most open streams of one watch API. */
export const MAX_WATCH_STREAMS = 10_000;

/** Something a refusal can be sent on (a server stream). */
interface Refusable {
  emit(event: 'error', status: { code: grpc.status; details: string }): boolean;
  getPeer(): string;
}

/** The limit of one API's streams. */
export class StreamLimit {
  readonly api: string;
  readonly max: number;
  /** Streams refused so far. */
  refused = 0;
  private readonly log: Logger;
  private readonly throttle = new LogThrottle();

  constructor(api: string, max: number, log: Logger) {
    this.api = api;
    this.max = max;
    this.log = log;
  }

  /** Whether a new stream may open while `open` are; if not, `call` is refused (counted, logged). */
  admit(open: number, call: Refusable): boolean {
    if (open < this.max) return true;
    this.refused++;
    this.throttle.note((skipped) =>
      this.log.warn('watch stream refused: too many open', {
        api: this.api,
        max: this.max,
        peer: call.getPeer(),
        unloggedBefore: skipped,
      }),
    );
    call.emit('error', {
      code: grpc.status.RESOURCE_EXHAUSTED,
      details: `too many open ${this.api} watches (at most ${this.max}); try again later`,
    });
    return false;
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
      'Watch streams refused because their API held its maximum of open streams.',
      ['api'],
    );
    for (const limit of this.limits.values()) family.labels(limit.api).inc(limit.refused);
    return registry.render();
  }
}
