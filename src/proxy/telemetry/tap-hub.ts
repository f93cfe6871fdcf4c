// A proxy's live taps (`trellis tap`, `trellis top`): each tap is a reader (the admin listener's
// GET /tap, admin/server.ts) with a filter and a rate cap (src/core/tap-filter.ts). While at least one is
// attached the hub hangs itself on the proxy's metrics object, where recordExchange
// (exchange-record.ts) finds it; with none that costs the data path one null check.
// Bounds, each counted (trellis_tap_* metrics) and logged at most once per 10 s:
// - taps at once per proxy (maxTaps): one more is refused with a reason;
// - events per second per tap (its maxRps, at most TAP_HARD_MAX_RPS): over it, exchanges are passed
//   over without building an event (rate_capped);
// - bytes waiting in a tap's socket (maxBufferedBytes): over it events are dropped (slow_consumer),
//   never queued and never waited for: the data path does not slow down for a reader.
// Each tap's stream tells its reader its drop counts about once a second while they change; a
// reader whose buffer stays full for STALLED_REPORTS reports in a row is disconnected (its slot freed).
import { LogThrottle } from '../../core/log-rate-limit.ts';
import type { Logger } from '../../core/log.ts';
import { Registry, type Counter, type CounterFamily, type Gauge } from '../../core/prometheus.ts';
import type { DescribedExchange, ExchangeTap } from './exchange-record.ts';
import type { Direction, HttpProtocol } from './metrics.ts';
import { tapEvent, type TapDropsEvent, type TapExchangeEvent } from './tap-event.ts';
import { tapMatches, type TapFilter } from '../../core/tap-filter.ts';

/** Where a tap's lines go: a socket (writableLength: bytes it has not sent yet). */
export interface TapSink {
  write(line: string): unknown;
  readonly writableLength: number;
  /** Ends the tap from the proxy's side (its reader stopped reading for too long). */
  destroy(): unknown;
}

export interface TapHubOptions {
  /** Taps attached at once (default 8). */
  readonly maxTaps?: number;
  /** Bytes a tap's sink may hold unsent before its events are dropped (default 256 KiB). */
  readonly maxBufferedBytes?: number;
  /** The proxy's own identity (null without one). */
  readonly ownIdentity: () => string | null;
  /** Hangs the hub where exchanges are recorded (null: detach). */
  readonly attach: (tap: ExchangeTap | null) => void;
  readonly log: Logger;
  /** Milliseconds, monotonic (default performance.now). */
  readonly now?: () => number;
  /** How often drop counts are sent (default 1000 ms). */
  readonly reportMs?: number;
}

export const TAP_DEFAULT_MAX_TAPS = 8;
/** Why the mTLS tap listener refused a caller (the `reason` of trellis_tap_refused_total). */
export type TapListenerRefusal = 'identity' | 'handshake' | 'no-certificate';
/** Reports in a row with a full buffer after which a tap's reader is disconnected. */
export const STALLED_REPORTS = 30;
export const TAP_DEFAULT_MAX_BUFFERED_BYTES = 256 * 1024;

/** One attached tap. */
export class TapSubscription {
  readonly filter: TapFilter;
  readonly sink: TapSink;
  /** Events sent, and the two kinds of drops (TapDropsEvent). */
  sent = 0;
  rateCapped = 0;
  slowConsumer = 0;
  private windowStart = -Infinity;
  private inWindow = 0;
  private reported = 0;
  /** Reports in a row that found the sink's buffer full. */
  stalled = 0;

  constructor(filter: TapFilter, sink: TapSink) {
    this.filter = filter;
    this.sink = sink;
  }

  /** Whether the tap may take one more event in the current second (not yet taken). */
  hasBudget(now: number): boolean {
    if (now - this.windowStart >= 1000) {
      this.windowStart = now;
      this.inWindow = 0;
    }
    return this.inWindow < this.filter.maxRps;
  }

  take(): void {
    this.inWindow++;
  }

  /** The drops line when the counts changed since the last one, else null. */
  dropsLine(): string | null {
    const total = this.rateCapped + this.slowConsumer;
    if (total === this.reported) return null;
    this.reported = total;
    const event: TapDropsEvent = {
      type: 'drops',
      rate_capped: this.rateCapped,
      slow_consumer: this.slowConsumer,
    };
    return JSON.stringify(event) + '\n';
  }
}

export class TapHub implements ExchangeTap {
  private readonly opts: TapHubOptions;
  private readonly maxTaps: number;
  private readonly maxBuffered: number;
  private readonly now: () => number;
  private subs: TapSubscription[] = [];
  private timer: NodeJS.Timeout | null = null;
  private readonly registry = new Registry();
  private readonly active: Gauge;
  private readonly events: Counter;
  private readonly droppedCapped: Counter;
  private readonly droppedSlow: Counter;
  private readonly refusedTooMany: Counter;
  private readonly refusedNotLocal: Counter;
  private readonly refusedForeignHost: Counter;
  private readonly refusedByReason: CounterFamily;
  private readonly slowLog = new LogThrottle();
  private readonly refuseLog = new LogThrottle();

  constructor(opts: TapHubOptions) {
    this.opts = opts;
    this.maxTaps = opts.maxTaps ?? TAP_DEFAULT_MAX_TAPS;
    this.maxBuffered = opts.maxBufferedBytes ?? TAP_DEFAULT_MAX_BUFFERED_BYTES;
    this.now = opts.now ?? (() => performance.now());
    const r = this.registry;
    this.active = r.gauge('trellis_tap_active', 'Live taps attached to this proxy.').labels();
    this.events = r.counter('trellis_tap_events_total', 'Tap events sent to tap readers.').labels();
    const dropped = r.counter(
      'trellis_tap_dropped_total',
      'Exchanges a tap did not get: over its events-per-second cap, or its reader was slow.',
      ['reason'],
    );
    this.droppedCapped = dropped.labels('rate-cap');
    this.droppedSlow = dropped.labels('slow-consumer');
    const refused = r.counter(
      'trellis_tap_refused_total',
      'Taps refused: the proxy had its most at once (too-many), the caller was not on loopback (not-loopback) or named another host in Host (foreign-host, DNS rebinding), or (the mTLS tap listener) its identity is not allowed, its handshake failed, or the proxy had no certificate yet.',
      ['reason'],
    );
    this.refusedTooMany = refused.labels('too-many');
    this.refusedNotLocal = refused.labels('not-loopback');
    this.refusedForeignHost = refused.labels('foreign-host');
    this.refusedByReason = refused;
  }

  /** Why one more tap would be refused (counted and logged), or null when it would be attached. */
  refusal(): string | null {
    if (this.subs.length < this.maxTaps) return null;
    this.refusedTooMany.inc();
    this.refuseLog.note((skipped) =>
      this.opts.log.warn('tap refused: too many taps at once', { max: this.maxTaps, skipped }),
    );
    return `this proxy has ${this.maxTaps} taps attached already, its most at once`;
  }

  /** Counts a tap refused because its caller was not on loopback (admin/tap-route.ts logs it). */
  refusedNotLoopback(): void {
    this.refusedNotLocal.inc();
  }

  /** Counts a loopback tap refused because its Host names another host (DNS rebinding; admin/tap-route.ts logs it). */
  refusedForeignHostField(): void {
    this.refusedForeignHost.inc();
  }

  /** Counts a tap refused at the mTLS tap listener (admin/tap-listener.ts logs it). */
  refusedAtTapListener(reason: TapListenerRefusal): void {
    this.refusedByReason.labels(reason).inc();
  }

  /** Attaches a tap; a reason when it is refused (the proxy has maxTaps already). */
  subscribe(filter: TapFilter, sink: TapSink): TapSubscription | string {
    const refused = this.refusal();
    if (refused !== null) return refused;
    const sub = new TapSubscription(filter, sink);
    this.subs = [...this.subs, sub];
    this.active.value = this.subs.length;
    if (this.subs.length === 1) {
      this.opts.attach(this);
      this.timer = setInterval(() => this.reportDrops(), this.opts.reportMs ?? 1000);
      this.timer.unref();
    }
    return sub;
  }

  unsubscribe(sub: TapSubscription): void {
    const left = this.subs.filter((s) => s !== sub);
    if (left.length === this.subs.length) return;
    this.subs = left;
    this.active.value = left.length;
    if (left.length === 0) {
      this.opts.attach(null);
      if (this.timer !== null) clearInterval(this.timer);
      this.timer = null;
    }
  }

  /** Taps attached now. */
  get size(): number {
    return this.subs.length;
  }

  offer(
    direction: Direction,
    _protocol: HttpProtocol,
    _status: number,
    _latencyMs: number,
    exchange: DescribedExchange,
  ): void {
    try {
      this.deliver(direction, exchange);
    } catch (err) {
      // A tap never breaks the exchange it watches.
      this.opts.log.debug('tap: an event could not be built', { err });
    }
  }

  private deliver(direction: Direction, exchange: DescribedExchange): void {
    const now = this.now();
    const subs = this.subs;
    let wanted = false;
    for (const sub of subs) {
      if (sub.filter.direction !== null && sub.filter.direction !== direction) continue;
      if (sub.hasBudget(now)) wanted = true;
      else this.capped(sub);
    }
    if (!wanted) return;
    const entry = exchange.accessLogEntry();
    const peer = exchange.tapPeer?.() ?? null;
    let event: TapExchangeEvent | null = null;
    let line: string | null = null;
    for (const sub of subs) {
      if (sub.filter.direction !== null && sub.filter.direction !== direction) continue;
      if (!sub.hasBudget(now)) continue; // counted above
      event ??= tapEvent(
        entry,
        peer,
        this.opts.ownIdentity(),
        exchange.grpcStatus,
        exchange.matchedRoute ?? null,
      );
      if (!tapMatches(sub.filter, event)) continue;
      sub.take();
      if (sub.sink.writableLength > this.maxBuffered) {
        sub.slowConsumer++;
        this.droppedSlow.inc();
        this.slowLog.note((skipped) =>
          this.opts.log.warn('tap reader is slow; dropping events', {
            bufferedBytes: sub.sink.writableLength,
            skipped,
          }),
        );
        continue;
      }
      line ??= JSON.stringify(event) + '\n';
      sub.sink.write(line);
      sub.sent++;
      this.events.inc();
    }
  }

  private capped(sub: TapSubscription): void {
    sub.rateCapped++;
    this.droppedCapped.inc();
  }

  private reportDrops(): void {
    for (const sub of this.subs) {
      if (sub.sink.writableLength > this.maxBuffered) {
        // The next report carries the counts; a reader that never reads again is let go.
        if (++sub.stalled >= STALLED_REPORTS) {
          this.opts.log.warn('tap reader stopped reading; disconnecting it', { sent: sub.sent });
          this.unsubscribe(sub);
          sub.sink.destroy();
        }
        continue;
      }
      sub.stalled = 0;
      const line = sub.dropsLine();
      if (line !== null) sub.sink.write(line);
    }
  }

  /** Its metrics, in the Prometheus text format (served with the proxy's /metrics). */
  metrics(): string {
    return this.registry.render();
  }

  /** Detaches every tap (the proxy shuts down). */
  close(): void {
    for (const sub of this.subs) this.unsubscribe(sub);
  }
}
