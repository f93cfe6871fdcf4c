// Per-stream endpoint choice on the HTTP/2 (gRPC) path. When discovery knows a routed target as a
// logical service name, every stream, not every connection, asks it for an endpoint: the streams
// one client multiplexes on a single connection are spread over the service by the balancer
// (peak-EWMA), which is why gRPC needs request-level balancing. A direct target (an IP literal, a
// name the control plane does not know, or no discovery at all) goes where routing sent it.
//
// A stream whose connect failed before any byte was sent may be retried once; the retry asks
// discovery to avoid the endpoint that failed.
import type {
  Pick as EndpointPick,
  PickFailure,
  PickOutcome,
  ServiceDiscovery,
} from '../outbound/discovery.ts';
import type { Target } from './h2-upstream-pool.ts';

/** What the HTTP/2 path needs from ServiceDiscovery. */
export type H2Discovery = Pick<ServiceDiscovery, 'pick' | 'isLogical'>;

/** Where one attempt of a stream goes; `pick` is null for a direct target (nothing to report). */
export interface Destination {
  readonly address: Target;
  readonly pick: EndpointPick | null;
}

/**
 * A PickFailure: discovery has no endpoint, and says why (after its fail-fast wait).
 * `no-other-endpoint`: a retry found only the endpoint that had just failed.
 */
export type DestinationOutcome = Destination | PickFailure | 'no-other-endpoint';

const NO_ENDPOINTS: PickOutcome = { error: 'no-endpoints', detail: 'discovery failed' };

/**
 * Chooses where one attempt of a stream to `target` goes and hands it to `then`, exactly once:
 * synchronously when the answer is known (the common case), later when discovery still waits for
 * the target's endpoints. `failed` is the previous attempt's pick when this is a retry; it is
 * completed only after the new pick was made, so the balancer still sees the failed endpoint as
 * busy and prefers another one. `then` must not throw (the caller guards it).
 */
export function chooseDestination(
  discovery: H2Discovery | null,
  target: Target,
  failed: EndpointPick | null,
  then: (outcome: DestinationOutcome) => void,
): void {
  if (discovery === null || !discovery.isLogical(target)) {
    failed?.done();
    then(failed === null ? { address: target, pick: null } : 'no-other-endpoint');
    return;
  }
  let outcome: PickOutcome | Promise<PickOutcome>;
  try {
    outcome = discovery.pick(target, failed?.key ?? null);
  } catch {
    outcome = NO_ENDPOINTS; // discovery never throws; should it, the stream still gets an answer
  }
  if (outcome instanceof Promise) {
    outcome.then(
      (picked) => then(settle(picked, failed)),
      () => then(settle(NO_ENDPOINTS, failed)),
    );
    return;
  }
  then(settle(outcome, failed));
}

function settle(outcome: PickOutcome, failed: EndpointPick | null): DestinationOutcome {
  failed?.done();
  if ('error' in outcome) return outcome;
  if (failed !== null && (outcome.key === null || outcome.key === failed.key)) {
    outcome.done();
    return 'no-other-endpoint';
  }
  return { address: outcome.address, pick: outcome };
}
