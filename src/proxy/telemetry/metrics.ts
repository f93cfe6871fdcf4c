// The proxy's metrics: request/response counts and latency, TCP connections and bytes, protocol
// detection outcomes and the proxy's own errors, each by direction; plus process metrics.
// Served by the admin listener at /metrics (see src/proxy/admin/server.ts).
//
// Every recording method runs on the data path, so none of them builds a string or allocates
// after warm-up: label values all come from closed sets, each label set maps to an index, and the
// child (a plain number holder, see src/core/prometheus.ts) is looked up in an array by that
// index. A child is created (and its label string built) the first time its label set is used.
import { isFailedExchange } from './exchange-verdict.ts';
import type { ExchangeTap } from './exchange-record.ts';
import { RouteMetrics } from './route-metrics.ts';
import { PeerMetrics } from './peer-metrics.ts';
import { rateLimitEvictions } from '../policy/rate-limit.ts';
import { PROXY_ERROR_REASONS, type ProxyErrorReason } from '../errors.ts';
import { logLinesSuppressed, type Logger } from '../../core/log.ts';
import { targetKey, type Target } from '../../core/target.ts';
import { H2_LIMITS, type H2Limit } from '../h2/limits.ts';
import { BREAKER_EVENTS, type BreakerCounters } from '../balance/backend-guard.ts';
import {
  Registry,
  type Counter,
  type CounterFamily,
  type Gauge,
  type GaugeFamily,
  type Histogram,
} from '../../core/prometheus.ts';

export type Direction = 'inbound' | 'outbound';
export type HttpProtocol = 'http1' | 'h2';
export type DetectedProtocol = 'http1' | 'h2' | 'tls' | 'opaque';
export type DetectOutcome =
  'detected' | 'timeout' | 'opaque-port' | 'cached-opaque' | 'configured' | 'closed' | 'late';

const DIRECTIONS: readonly Direction[] = ['inbound', 'outbound'];
const HTTP_PROTOCOLS: readonly HttpProtocol[] = ['http1', 'h2'];
const DETECTED_PROTOCOLS: readonly DetectedProtocol[] = ['http1', 'h2', 'tls', 'opaque'];
const DETECT_OUTCOMES: readonly DetectOutcome[] = [
  'detected',
  'timeout',
  'opaque-port',
  'cached-opaque',
  'configured',
  'closed',
  'late',
];
const CLASSIFICATIONS = ['success', 'failure'] as const;
const LIMITED_LISTENERS = ['inbound', 'outbound', 'admin', 'tap'] as const;
export type LimitedListener = (typeof LIMITED_LISTENERS)[number];

/** Linkerd's latency buckets (1 ms .. 10 s), in seconds: promtool rejects `_ms` metric names. */
export const LATENCY_BUCKETS_SECONDS: readonly number[] = [
  0.001, 0.002, 0.003, 0.004, 0.005, 0.01, 0.02, 0.03, 0.04, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 1, 2, 5, 10,
];

/**
 * Label values that come from verified identities and policy names (not from a fixed set) are
 * bounded: past this many distinct label sets a family records the rest under "other", so a
 * misbehaving control plane cannot grow /metrics without end.
 */
const MAX_DYNAMIC_SERIES = 1000;

/** Why traffic to a discovered endpoint goes without mutual TLS (trellis_plain_outbound_total). */
export type PlainReason = 'not-meshed' | 'no-identity';

/** What an inbound authorization decision is counted as. */
export type AuthzOutcome = 'allow' | 'deny' | 'audit';

/** status_code slots: 100..599 as themselves, everything else (including 0) as "other". */
const STATUS_SLOTS = 501;
const OTHER_STATUS_SLOT = 500;

function indexMap<T extends string>(values: readonly T[]): Record<string, number> {
  const map: Record<string, number> = Object.create(null);
  values.forEach((v, i) => (map[v] = i));
  return map;
}
const DETECTED_PROTOCOL_INDEX = indexMap(DETECTED_PROTOCOLS);
const DETECT_OUTCOME_INDEX = indexMap(DETECT_OUTCOMES);
const ERROR_REASON_INDEX = indexMap(PROXY_ERROR_REASONS);
const H2_LIMIT_INDEX = indexMap(H2_LIMITS);
const BREAKER_EVENT_INDEX = indexMap(BREAKER_EVENTS);

function dirIndex(dir: Direction): number {
  return dir === 'inbound' ? 0 : 1;
}
function protoIndex(protocol: HttpProtocol): number {
  return protocol === 'http1' ? 0 : 1;
}
function statusSlot(status: number): number {
  return status >= 100 && status <= 599 && Number.isInteger(status) ? status - 100 : OTHER_STATUS_SLOT;
}

/** Lazily created children of one counter family, indexed by the caller's label-set index. */
class CounterSlots {
  private readonly family: CounterFamily;
  private readonly slots: (Counter | undefined)[];
  private readonly labelsOf: (index: number) => string[];
  constructor(family: CounterFamily, size: number, labelsOf: (index: number) => string[]) {
    this.family = family;
    this.slots = new Array<Counter | undefined>(size).fill(undefined);
    this.labelsOf = labelsOf;
  }
  inc(index: number, by = 1): void {
    let c = this.slots[index];
    if (c === undefined) c = this.slots[index] = this.family.labels(...this.labelsOf(index));
    c.value += by;
  }
}

export class ProxyMetrics {
  /** The live tap while one is attached (telemetry/tap-hub.ts sets it; exchange-record.ts reads it). */
  tap: ExchangeTap | null = null;
  private readonly registry = new Registry();
  private readonly requests: Counter[] = [];
  private readonly responses: CounterSlots;
  private readonly latency: Histogram[];
  private readonly proxyErrors: CounterSlots;
  private readonly tcpOpens: Counter[];
  private readonly tcpCloses: Counter[];
  private readonly tcpOpenConnections: Gauge[];
  private readonly tcpReadBytes: Counter[];
  private readonly tcpWriteBytes: Counter[];
  private readonly detections: CounterSlots;
  private readonly meshConnections: CounterFamily;
  private readonly meshConnectionsBy: Map<string, Counter>[] = [new Map(), new Map()];
  private readonly handshakeErrors: Counter[];
  private readonly resumed: Counter[];
  private readonly authz: CounterFamily;
  private readonly authzBy = new Map<string, Counter>();
  /** Decisions the authorizer hands out repeatedly map to their counter without building a key. */
  private readonly authzByDecision = new WeakMap<object, Counter[]>();
  private certExpiry: GaugeFamily | null = null;
  private readonly connectionLimits: CounterSlots;
  private readonly h2Limits: CounterSlots;
  private readonly retries: Counter[] = [];
  /** Per route and backend (outbound/routes.ts makes one series per compiled backend). */
  readonly routes: RouteMetrics;
  /** Per client identity (inbound) and destination workload (outbound): `trellis stat --from/--to`. */
  readonly peers: PeerMetrics;
  private readonly breakerEvents: CounterFamily;
  /** Each backend's counters, by backend (bounded by MAX_DYNAMIC_SERIES, then "other"). */
  private readonly breakerBy = new Map<string, BreakerCounters>();
  /** trellis_route_faults_total: [abort, delay]. */
  private readonly faults: Counter[] = [];
  /** trellis_inbound_rate_limited_total: [total, identity, override]. */
  private readonly rateLimits: Counter[] = [];
  // trellis_plain_outbound_total (`trellis edges`): by endpoint object, then by label set.
  private readonly plain: CounterFamily;
  private readonly plainBy = new Map<string, Counter>();
  private readonly plainByEndpoint = new WeakMap<object, Counter>();
  // Tracing (telemetry/trace-export.ts): spans exported, and dropped by reason.
  private readonly traceExported: Counter;
  private readonly traceDropped: Counter[];

  /** `log`: where a bound reached is said (rate-limited; the per-peer families', peer-metrics.ts). */
  constructor(opts: { now?: () => number; log?: Logger } = {}) {
    const now = opts.now ?? Date.now;
    const r = this.registry;

    const requestTotal = r.counter('trellis_request_total', 'HTTP requests received.', [
      'direction',
      'protocol',
    ]);
    for (const dir of DIRECTIONS) {
      for (const protocol of HTTP_PROTOCOLS) this.requests.push(requestTotal.labels(dir, protocol));
    }

    const responseTotal = r.counter(
      'trellis_response_total',
      'HTTP responses finished, by status code ("other" when none was sent) and classification.',
      ['direction', 'protocol', 'status_code', 'classification'],
    );
    this.responses = new CounterSlots(responseTotal, 2 * 2 * STATUS_SLOTS * 2, (i) => {
      const cls = i % 2;
      const slot = Math.floor(i / 2) % STATUS_SLOTS;
      const proto = Math.floor(i / (2 * STATUS_SLOTS)) % 2;
      const dir = Math.floor(i / (2 * STATUS_SLOTS * 2));
      const status = slot === OTHER_STATUS_SLOT ? 'other' : String(slot + 100);
      return [DIRECTIONS[dir]!, HTTP_PROTOCOLS[proto]!, status, CLASSIFICATIONS[cls]!];
    });

    const latency = r.histogram(
      'trellis_response_latency_seconds',
      'Time from the start of an HTTP request to the end of its response.',
      ['direction'],
      LATENCY_BUCKETS_SECONDS,
    );
    this.latency = DIRECTIONS.map((d) => latency.labels(d));

    const errors = r.counter(
      'trellis_proxy_errors_total',
      'Requests or connections the proxy answered or closed itself, by reason.',
      ['direction', 'reason'],
    );
    const reasons = PROXY_ERROR_REASONS.length;
    this.proxyErrors = new CounterSlots(errors, 2 * reasons, (i) => [
      DIRECTIONS[Math.floor(i / reasons)]!,
      PROXY_ERROR_REASONS[i % reasons]!,
    ]);

    const byDirection = ['direction'];
    const opens = r.counter('trellis_tcp_open_total', 'TCP connections accepted.', byDirection);
    const closes = r.counter('trellis_tcp_close_total', 'TCP connections closed.', byDirection);
    const open = r.gauge('trellis_tcp_open_connections', 'TCP connections currently open.', byDirection);
    const read = r.counter(
      'trellis_tcp_read_bytes_total',
      'Bytes read from accepted connections (closed ones).',
      byDirection,
    );
    const written = r.counter(
      'trellis_tcp_write_bytes_total',
      'Bytes written to accepted connections (closed ones).',
      byDirection,
    );
    this.tcpOpens = DIRECTIONS.map((d) => opens.labels(d));
    this.tcpCloses = DIRECTIONS.map((d) => closes.labels(d));
    this.tcpOpenConnections = DIRECTIONS.map((d) => open.labels(d));
    this.tcpReadBytes = DIRECTIONS.map((d) => read.labels(d));
    this.tcpWriteBytes = DIRECTIONS.map((d) => written.labels(d));

    const detect = r.counter('trellis_detect_total', 'Protocol detection results on accepted connections.', [
      'direction',
      'protocol',
      'outcome',
    ]);
    const protocols = DETECTED_PROTOCOLS.length;
    const outcomes = DETECT_OUTCOMES.length;
    this.detections = new CounterSlots(detect, 2 * protocols * outcomes, (i) => [
      DIRECTIONS[Math.floor(i / (protocols * outcomes))]!,
      DETECTED_PROTOCOLS[Math.floor(i / outcomes) % protocols]!,
      DETECT_OUTCOMES[i % outcomes]!,
    ]);

    this.meshConnections = r.counter(
      'trellis_mesh_connections_total',
      'Mutual TLS connections established with meshed peers, by the peer identity.',
      ['direction', 'peer_identity'],
    );
    const handshakeErrors = r.counter(
      'trellis_tls_handshake_errors_total',
      'Mutual TLS handshakes that failed (including certificates refused).',
      byDirection,
    );
    this.handshakeErrors = DIRECTIONS.map((d) => handshakeErrors.labels(d));
    const resumed = r.counter(
      'trellis_tls_sessions_resumed_total',
      'Mutual TLS connections whose handshake resumed an earlier session (no certificates exchanged).',
      byDirection,
    );
    this.resumed = DIRECTIONS.map((d) => resumed.labels(d));
    this.authz = r.counter(
      'trellis_inbound_authz_total',
      'Inbound authorization decisions, by Server, deciding policy and decision (allow, deny, audit).',
      ['server', 'policy', 'decision'],
    );

    const limited = r.counter(
      'trellis_connection_limit_total',
      'Connections closed at a listener limit: an idle one shed to make room, or a new one refused.',
      ['listener', 'limit', 'action'],
    );
    this.connectionLimits = new CounterSlots(limited, LIMITED_LISTENERS.length * 4, (i) => [
      LIMITED_LISTENERS[i >> 2]!,
      (i & 2) === 0 ? 'listener' : 'peer',
      (i & 1) === 0 ? 'shed' : 'refused',
    ]);

    const h2Limits = r.counter(
      'trellis_h2_limit_exceeded_total',
      'Limits of the own HTTP/2 connections (trellis-h2h1/1) that peers ran into, by limit (docs/security.md).',
      ['direction', 'limit'],
    );
    const limitCount = H2_LIMITS.length;
    this.h2Limits = new CounterSlots(h2Limits, 2 * limitCount, (i) => [
      DIRECTIONS[Math.floor(i / limitCount)]!,
      H2_LIMITS[i % limitCount]!,
    ]);

    this.plain = r.counter(
      'trellis_plain_outbound_total',
      'Outbound requests and opaque connections sent to a discovered endpoint without mutual TLS, by ' +
        'its address and why: not-meshed (discovery gives it no identity) or no-identity (this proxy has none).',
      ['destination', 'reason'],
    );

    const retries = r.counter(
      'trellis_retries_total',
      'Requests a route rule sent again after a status it retries (retried), or did not because the retry budget was spent (budget_exhausted).',
      ['direction', 'outcome'],
    );
    for (const dir of DIRECTIONS) {
      this.retries.push(retries.labels(dir, 'retried'), retries.labels(dir, 'budget_exhausted'));
    }
    this.routes = new RouteMetrics(r, LATENCY_BUCKETS_SECONDS);
    this.peers = new PeerMetrics(r, LATENCY_BUCKETS_SECONDS, opts.log);

    this.breakerEvents = r.counter(
      'trellis_breaker_events_total',
      'Circuit breaking of outbound backends, by backend Service port: endpoints tripped, recovered (probe succeeded), reopened (probe failed), probes sent, requests failed fast because every endpoint was tripped (all_tripped), and requests refused over max-pending-requests or max-connections (overflow).',
      ['backend', 'event'],
    );

    // Faults injected by route rules (src/core/routes/fault.ts) and inbound rate limits (src/proxy/policy/rate-limit.ts).
    const faults = r.counter(
      'trellis_route_faults_total',
      'Faults a route rule injected (HTTPFault): abort (answered without forwarding) or delay.',
      ['kind'],
    );
    this.faults.push(faults.labels('abort'), faults.labels('delay'));
    const rateLimited = r.counter(
      'trellis_inbound_rate_limited_total',
      'Inbound requests answered 429 by a rate limit (HTTPLocalRateLimitPolicy), by the limit that was over: total, identity or override.',
      ['limit'],
    );
    this.rateLimits.push(
      rateLimited.labels('total'),
      rateLimited.labels('identity'),
      rateLimited.labels('override'),
    );
    r
      .counter(
        'trellis_inbound_rate_limit_evictions_total',
        'Per-identity rate limit buckets evicted (one not used recently) because a Server held the most it keeps.',
      )
      .labels().collect = rateLimitEvictions;

    this.traceExported = r
      .counter('trellis_trace_spans_exported_total', 'Trace spans the collector accepted.')
      .labels();
    const traceDropped = r.counter(
      'trellis_trace_spans_dropped_total',
      'Trace spans dropped: the export queue was full (queue_full) or the collector failed or refused them (export_failed).',
      ['reason'],
    );
    this.traceDropped = [traceDropped.labels('queue_full'), traceDropped.labels('export_failed')];

    const startSeconds = (now() - process.uptime() * 1000) / 1000;
    r.gauge('process_start_time_seconds', 'Start time of the process since the Unix epoch, in seconds.')
      .labels()
      .set(Math.round(startSeconds * 1000) / 1000);
    r.counter('process_cpu_seconds_total', 'User and system CPU time spent, in seconds.').labels().collect =
      () => {
        const { user, system } = process.cpuUsage();
        return (user + system) / 1e6;
      };
    r.gauge('process_resident_memory_bytes', 'Resident memory size, in bytes.').labels().collect = () =>
      process.memoryUsage.rss();
    r.gauge('nodejs_heap_used_bytes', 'V8 heap in use, in bytes.').labels().collect = () =>
      process.memoryUsage().heapUsed;

    // The rate limit of repeated log lines (src/core/log-rate-limit.ts) counts per process.
    r
      .counter(
        'trellis_log_lines_suppressed_total',
        'Log lines not written because the same message repeated too often (see log rate limit).',
      )
      .labels().collect = logLinesSuppressed;
  }

  requestStarted(dir: Direction, protocol: HttpProtocol): void {
    this.requests[dirIndex(dir) * 2 + protoIndex(protocol)]!.value += 1;
  }

  /** failed = the request failed (transport error, or grpc-status != 0 for gRPC); status 0 = no response was sent */
  responseFinished(
    dir: Direction,
    protocol: HttpProtocol,
    status: number,
    latencyMs: number,
    failed: boolean,
  ): void {
    const d = dirIndex(dir);
    const slot = statusSlot(status);
    const failure = isFailedExchange(status, failed);
    this.responses.inc(((d * 2 + protoIndex(protocol)) * STATUS_SLOTS + slot) * 2 + (failure ? 1 : 0));
    // NaN or negative latencies (a clock step) count as 0 rather than poisoning the sum.
    this.latency[d]!.observe(latencyMs > 0 ? latencyMs / 1000 : 0);
  }

  proxyError(dir: Direction, reason: ProxyErrorReason): void {
    const r = ERROR_REASON_INDEX[reason];
    if (r !== undefined) this.proxyErrors.inc(dirIndex(dir) * PROXY_ERROR_REASONS.length + r);
  }

  /**
   * A connection closed at a listener limit (connection-limits.ts); `listener`: inbound, outbound
   * (destination listeners count as outbound) or admin.
   */
  connectionLimited(listener: LimitedListener, limit: 'listener' | 'peer', action: 'shed' | 'refused'): void {
    this.connectionLimits.inc(
      LIMITED_LISTENERS.indexOf(listener) * 4 + (limit === 'listener' ? 0 : 2) + (action === 'shed' ? 0 : 1),
    );
  }

  /** A peer of an own HTTP/2 connection ran into `limit` (src/proxy/h2/limits.ts). */
  h2LimitExceeded(dir: Direction, limit: H2Limit): void {
    const l = H2_LIMIT_INDEX[limit];
    if (l !== undefined) this.h2Limits.inc(dirIndex(dir) * H2_LIMITS.length + l);
  }

  tcpOpened(dir: Direction): void {
    const d = dirIndex(dir);
    this.tcpOpens[d]!.value += 1;
    this.tcpOpenConnections[d]!.value += 1;
  }

  /** bytes read from / written to the accepted (client-side) connection */
  tcpClosed(dir: Direction, bytesRead: number, bytesWritten: number): void {
    const d = dirIndex(dir);
    this.tcpCloses[d]!.value += 1;
    this.tcpOpenConnections[d]!.value -= 1;
    if (bytesRead > 0) this.tcpReadBytes[d]!.value += bytesRead;
    if (bytesWritten > 0) this.tcpWriteBytes[d]!.value += bytesWritten;
  }

  detected(dir: Direction, protocol: DetectedProtocol, outcome: DetectOutcome): void {
    const p = DETECTED_PROTOCOL_INDEX[protocol];
    const o = DETECT_OUTCOME_INDEX[outcome];
    if (p === undefined || o === undefined) return;
    this.detections.inc((dirIndex(dir) * DETECTED_PROTOCOLS.length + p) * DETECT_OUTCOMES.length + o);
  }

  /** A route retry: sent again, or not because the Service port's retry budget was spent. */
  retried(dir: Direction, outcome: 'retried' | 'budget-exhausted'): void {
    this.retries[dirIndex(dir) * 2 + (outcome === 'retried' ? 0 : 1)]!.value += 1;
  }

  /**
   * The circuit breaking counters of one backend (asked for once, when its breaker is made): each
   * count() is an array index, allocation-free.
   */
  breakerCounters(backend: string): BreakerCounters {
    const known = this.breakerBy.get(backend);
    if (known !== undefined) return known;
    const label = this.breakerBy.size < MAX_DYNAMIC_SERIES ? backend : 'other';
    const counters = BREAKER_EVENTS.map((event) => this.breakerEvents.labels(label, event.replace('-', '_')));
    const made: BreakerCounters = { count: (event) => (counters[BREAKER_EVENT_INDEX[event]!]!.value += 1) };
    if (this.breakerBy.size < MAX_DYNAMIC_SERIES) this.breakerBy.set(backend, made);
    return made;
  }

  /** A route rule's fault was injected into a request. */
  faultInjected(kind: 'abort' | 'delay'): void {
    this.faults[kind === 'abort' ? 0 : 1]!.value += 1;
  }

  /** An inbound request was refused by the rate limit `limit`. */
  rateLimited(limit: 'total' | 'identity' | 'override'): void {
    this.rateLimits[limit === 'total' ? 0 : limit === 'identity' ? 1 : 2]!.value += 1;
  }

  /** Trace spans the collector accepted (`n` of them). */
  traceSpansExported(n: number): void {
    this.traceExported.value += n;
  }

  /** Trace spans dropped: the export queue was full, or the export failed. */
  traceSpansDropped(reason: 'queue-full' | 'export-failed', n: number): void {
    this.traceDropped[reason === 'queue-full' ? 0 : 1]!.value += n;
  }

  /**
   * One mutual TLS connection established; `peer` is the verified identity of the other side,
   * `resumed` whether its handshake resumed an earlier session (no certificates exchanged).
   */
  meshConnection(dir: Direction, peer: string, resumed = false): void {
    if (resumed) this.resumed[dirIndex(dir)]!.value += 1;
    const byPeer = this.meshConnectionsBy[dirIndex(dir)]!;
    let c = byPeer.get(peer);
    if (c === undefined) {
      // Past the bound every new identity shares "other", and is not remembered: the map stays
      // bounded too, not only the series.
      if (byPeer.size < MAX_DYNAMIC_SERIES) {
        c = this.meshConnections.labels(dir, peer);
        byPeer.set(peer, c);
      } else c = this.meshConnections.labels(dir, 'other');
    }
    c.value += 1;
  }

  /**
   * One outbound request or opaque connection to a discovered endpoint without mutual TLS. The
   * endpoint object (kept by discovery while it is unchanged) finds its counter without building a
   * label; past MAX_DYNAMIC_SERIES addresses the rest count as "other".
   */
  plainOutbound(endpoint: { readonly address: Target }, reason: PlainReason): void {
    let c = this.plainByEndpoint.get(endpoint);
    if (c === undefined) {
      const destination = targetKey(endpoint.address);
      const key = `${destination} ${reason}`;
      c = this.plainBy.get(key);
      if (c === undefined) {
        c = this.plain.labels(this.plainBy.size < MAX_DYNAMIC_SERIES ? destination : 'other', reason);
        if (this.plainBy.size < MAX_DYNAMIC_SERIES) this.plainBy.set(key, c);
      }
      this.plainByEndpoint.set(endpoint, c);
    }
    c.value += 1;
  }

  tlsHandshakeFailed(dir: Direction): void {
    this.handshakeErrors[dirIndex(dir)]!.value += 1;
  }

  /** One inbound authorization decision (the Decision objects of types.ts). */
  authorized(decision: { server: string; policy: string }, outcome: AuthzOutcome): void {
    const slot = outcome === 'allow' ? 0 : outcome === 'deny' ? 1 : 2;
    let byOutcome = this.authzByDecision.get(decision);
    if (byOutcome === undefined) {
      byOutcome = [];
      this.authzByDecision.set(decision, byOutcome);
    }
    let c = byOutcome[slot];
    if (c === undefined) {
      const key = `${decision.server}\u0000${decision.policy}\u0000${outcome}`;
      c = this.authzBy.get(key);
      if (c === undefined) {
        c =
          this.authzBy.size < MAX_DYNAMIC_SERIES
            ? this.authz.labels(decision.server, decision.policy, outcome)
            : this.authz.labels('other', 'other', outcome);
        this.authzBy.set(key, c);
      }
      byOutcome[slot] = c;
    }
    c.value += 1;
  }

  /**
   * The current leaf certificate's notAfter; the gauge exists only once the proxy has an identity
   * (absent without one).
   */
  identityExpiry(expiresAtMs: number): void {
    this.certExpiry ??= this.registry.gauge(
      'trellis_identity_cert_expiry_timestamp_seconds',
      "The proxy's current certificate's expiry (notAfter), since the Unix epoch, in seconds.",
    );
    this.certExpiry.labels().set(Math.floor(expiresAtMs / 1000));
  }

  /** Prometheus text exposition format 0.0.4. */
  render(): string {
    return this.registry.render();
  }
}
