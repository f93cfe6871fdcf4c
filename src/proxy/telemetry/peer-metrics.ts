// Golden metrics by the workload at the other end of a request, for `trellis stat --from/--to`
// (src/control/metrics/peer-snapshot.ts reads them): inbound by the client's verified identity
// (`client_id`, as Linkerd's inbound response_total names it; "unauthenticated" without mTLS),
// outbound by the namespace and workload that discovery gave the endpoint the request went to
// (`dst_namespace`, `dst_workload`, as Linkerd's dst_* labels; "unknown" for a target discovery does
// not describe). Separate families, so trellis_response_total keeps its cardinality.
//
// A PeerSeries is looked up once per connection (inbound: the identity is the connection's) or once
// per endpoint object (outbound: a WeakMap, no key built per request); recording is then a few
// field updates. Past MAX_PEERS distinct peers per direction, the rest share the "other" series,
// and each peer (connection or endpoint) sent there is counted in trellis_peer_overflow_total and
// said in the log (at most one line per 10 s and direction).
import { isFailedExchange } from './exchange-verdict.ts';
import type { Counter, CounterFamily, Histogram, HistogramFamily, Registry } from '../../core/prometheus.ts';
import type { Endpoint } from '../../core/endpoints.ts';
import { silentLogger, type Logger } from '../../core/log.ts';
import { LogThrottle } from '../../core/log-rate-limit.ts';
import {
  MAX_PEERS,
  INBOUND_PEER_LATENCY,
  INBOUND_PEER_RESPONSES,
  OUTBOUND_PEER_LATENCY,
  OUTBOUND_PEER_RESPONSES,
  OVERFLOW_PEER,
  UNAUTHENTICATED_CLIENT,
  UNKNOWN_WORKLOAD,
} from '../../core/peer-metric-names.ts';

export { MAX_PEERS } from '../../core/peer-metric-names.ts';
/** The responses and latency of one peer, in one direction. */
export class PeerSeries {
  private readonly success: Counter;
  private readonly failure: Counter;
  private readonly latency: Histogram;

  constructor(success: Counter, failure: Counter, latency: Histogram) {
    this.success = success;
    this.failure = failure;
    this.latency = latency;
  }

  /**
   * One finished exchange, classified as trellis_response_total classifies it: a failure when
   * `failed`, without a status (0), or a 5xx.
   */
  record(status: number, latencyMs: number, failed: boolean): void {
    (isFailedExchange(status, failed) ? this.failure : this.success).value += 1;
    this.latency.observe(latencyMs > 0 ? latencyMs / 1000 : 0);
  }
}

/** One direction's families and its bounded peers. */
class PeerFamilies {
  private readonly responses: CounterFamily;
  private readonly latency: HistogramFamily;
  private readonly overflowed: Counter;
  private readonly byKey = new Map<string, PeerSeries>();
  private overflow: PeerSeries | null = null;
  private readonly sayOverflow: (key: string) => void;

  constructor(
    responses: CounterFamily,
    latency: HistogramFamily,
    overflowed: Counter,
    sayOverflow: (key: string) => void,
  ) {
    this.responses = responses;
    this.latency = latency;
    this.overflowed = overflowed;
    this.sayOverflow = sayOverflow;
  }

  /** The series of `key` (its label values `labels`); past the bound "other", counted. */
  series(key: string, labels: () => readonly string[], overflowLabels: readonly string[]): PeerSeries {
    const known = this.byKey.get(key);
    if (known !== undefined) return known;
    if (this.byKey.size >= MAX_PEERS) {
      this.overflowed.value += 1;
      this.sayOverflow(key);
      return (this.overflow ??= this.make(overflowLabels));
    }
    const made = this.make(labels());
    this.byKey.set(key, made);
    return made;
  }

  private make(labels: readonly string[]): PeerSeries {
    return new PeerSeries(
      this.responses.labels(...labels, 'success'),
      this.responses.labels(...labels, 'failure'),
      this.latency.labels(...labels),
    );
  }
}

export class PeerMetrics {
  private readonly inboundPeers: PeerFamilies;
  private readonly outboundPeers: PeerFamilies;
  private readonly byEndpoint = new WeakMap<Endpoint, PeerSeries>();
  private readonly undiscovered: PeerSeries;

  constructor(registry: Registry, latencyBuckets: readonly number[], log: Logger = silentLogger) {
    const sayOverflow = (direction: 'inbound' | 'outbound') => {
      const throttle = new LogThrottle();
      return (key: string) =>
        throttle.note((skipped) =>
          log.warn('per-peer metrics are full: this peer is counted as "other"', {
            direction,
            peer: key.replace('\u0000', '/'),
            bound: MAX_PEERS,
            skippedLines: skipped,
          }),
        );
    };
    const overflow = registry.counter(
      'trellis_peer_overflow_total',
      `Connections (inbound) or endpoints (outbound) whose peer was recorded as "other" in the per-peer families, because ${MAX_PEERS} peers already have their own series.`,
      ['direction'],
    );
    this.inboundPeers = new PeerFamilies(
      registry.counter(
        INBOUND_PEER_RESPONSES,
        'Inbound HTTP responses finished, by the client\'s verified identity ("unauthenticated" without mTLS) and classification.',
        ['client_id', 'classification'],
      ),
      registry.histogram(
        INBOUND_PEER_LATENCY,
        "Time from the start of an inbound HTTP request to the end of its response, by the client's verified identity.",
        ['client_id'],
        latencyBuckets,
      ),
      overflow.labels('inbound'),
      sayOverflow('inbound'),
    );
    this.outboundPeers = new PeerFamilies(
      registry.counter(
        OUTBOUND_PEER_RESPONSES,
        'Outbound HTTP responses finished, by the namespace and workload of the endpoint the request went to ("unknown" when discovery does not say) and classification.',
        ['dst_namespace', 'dst_workload', 'classification'],
      ),
      registry.histogram(
        OUTBOUND_PEER_LATENCY,
        'Time from the start of an outbound HTTP request to the end of its response, by the namespace and workload of its endpoint.',
        ['dst_namespace', 'dst_workload'],
        latencyBuckets,
      ),
      overflow.labels('outbound'),
      sayOverflow('outbound'),
    );
    this.undiscovered = this.outboundPeers.series('', () => ['', UNKNOWN_WORKLOAD], ['', OVERFLOW_PEER]);
  }

  /** The series of a client (once per connection); `identity` null: not authenticated. */
  inbound(identity: string | null): PeerSeries {
    const id = identity === null || identity === '' ? UNAUTHENTICATED_CLIENT : identity;
    return this.inboundPeers.series(id, () => [id], [OVERFLOW_PEER]);
  }

  /** The series of the endpoint a request went to (null: none was picked, or a direct target). */
  outbound(endpoint: Endpoint | null): PeerSeries {
    if (endpoint === null) return this.undiscovered;
    let series = this.byEndpoint.get(endpoint);
    if (series === undefined) {
      const namespace = endpoint.labels.namespace ?? '';
      const workload = endpoint.labels.workload ?? '';
      series =
        workload === ''
          ? this.undiscovered
          : this.outboundPeers.series(`${namespace}\u0000${workload}`, () => [namespace, workload], [
              '',
              OVERFLOW_PEER,
            ]);
      this.byEndpoint.set(endpoint, series);
    }
    return series;
  }
}
