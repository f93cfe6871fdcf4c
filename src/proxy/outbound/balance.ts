// The concrete level of the outbound stack, written once for every protocol: which endpoint of a
// target one request (an HTTP/1 request, an HTTP/2 stream) or one connection (opaque TCP, a
// CONNECT tunnel) goes to, and when a failed connect goes once more to another endpoint. The
// protocols differ only in how they connect to the endpoint they were given (a pooled HTTP/1
// connection, a stream on a pooled HTTP/2 connection, a socket; each plain or over mTLS); the
// pick, its late answer, the retry rule and the report back to the balancer are here.
//
// The retry: a connect that failed before any byte of the request was sent is tried once more,
// on another endpoint. Discovery is asked to avoid the one that failed, which stays counted as
// busy until the new pick is made (so the balancer prefers the others); when discovery has no
// other endpoint the first failure is the answer. A direct target (an IP literal, a name the
// control plane does not know, or no discovery at all) has nowhere else to go and is not retried;
// nor is a connect that failed because this proxy has no identity to present (no-identity), which
// no other endpoint would change.
//
// The circuit breaker (src/proxy/balance/backend-guard.ts) learns each exchange's outcome from its
// pick: done(rtt, failed) with the response's verdict, fail() before done() when the endpoint
// could not be reached or broke the exchange. A pick handed back here as `failed` with otherOnly
// (a connect that failed) is marked failed here; the protocols mark the rest.
import net from 'node:net';
import { performance } from 'node:perf_hooks';
import { meshIdentityOf } from '../../core/endpoints.ts';
import type { Target } from '../../core/target.ts';
import type { ConnectFailureReason } from '../errors.ts';
import { countsAgainstEndpoint } from '../balance/failure-accrual.ts';
import {
  directPick,
  type DiscoveryFailureReason,
  type Pick as EndpointPick,
  type PickFailure,
  type PickOutcome,
  type ServiceDiscovery,
} from './discovery.ts';
import { connectTcp } from '../tcp/connect.ts';

/** What the balanced paths need from ServiceDiscovery. */
export type Discovery = Pick<ServiceDiscovery, 'pick' | 'isLogical'>;

/**
 * Where one attempt goes: an endpoint discovery picked (a direct EndpointPick, key null, for a target it
 * does not balance), a PickFailure (discovery has no endpoint, and says why, after its fail-fast
 * wait), or `no-other-endpoint` when a retry found only the endpoint that had just failed.
 */
export type EndpointOutcome = EndpointPick | PickFailure | 'no-other-endpoint';

/** Receives an EndpointOutcome, exactly once per pickEndpoint call; must not throw. */
export interface EndpointSink {
  /**
   * The pick is the receiver's to report (done) from now on: when the exchange ended while
   * discovery was still waiting, the receiver releases it with done() and does nothing else.
   */
  onEndpoint(outcome: EndpointOutcome): void;
}

const NO_ENDPOINTS: PickFailure = { error: 'no-endpoints', detail: 'discovery failed' };

/**
 * Chooses where one attempt to `target` goes and hands it to `sink`: synchronously when the
 * answer is known (the common case), later when discovery still waits for the target's
 * endpoints. `failed` is the previous attempt's pick on a retry; it is reported (done) only once
 * the new pick is made, so the balancer still sees the failed endpoint as busy meanwhile. With
 * `otherOnly` false, the failed endpoint may be picked again when discovery has no other (a
 * request re-sent because a pooled connection closed as it was reused: the endpoint itself may
 * be fine).
 */
export function pickEndpoint(
  discovery: Discovery | null,
  target: Target,
  failed: EndpointPick | null,
  sink: EndpointSink,
  otherOnly = true,
): void {
  if (discovery === null || !discovery.isLogical(target)) {
    failed?.done();
    sink.onEndpoint(failed === null || !otherOnly ? directPick(target) : 'no-other-endpoint');
    return;
  }
  let outcome: PickOutcome | Promise<PickOutcome>;
  try {
    outcome = discovery.pick(target, failed?.key ?? null);
  } catch {
    outcome = NO_ENDPOINTS; // discovery never throws; should it, the exchange still gets an answer
  }
  const other = otherOnly ? failed : null;
  other?.fail?.(); // its connect failed (only connect failures are retried elsewhere)
  if (outcome instanceof Promise) {
    outcome.then(
      (picked) => sink.onEndpoint(settle(picked, failed, other)),
      () => sink.onEndpoint(settle(NO_ENDPOINTS, failed, other)),
    );
    return;
  }
  sink.onEndpoint(settle(outcome, failed, other));
}

function settle(
  outcome: PickOutcome,
  failed: EndpointPick | null,
  other: EndpointPick | null,
): EndpointOutcome {
  failed?.done();
  if ('error' in outcome) return outcome;
  if (other !== null && (outcome.key === null || outcome.key === other.key)) {
    outcome.done();
    return 'no-other-endpoint';
  }
  return outcome;
}

/**
 * Whether an attempt whose connect failed with `reason` (nothing of the request sent) goes once
 * more to another endpoint: only the first failure of a balanced pick, and not for no-identity.
 */
export function retriesElsewhere(
  failed: EndpointPick,
  reason: ConnectFailureReason,
  retried: boolean,
): boolean {
  return !retried && failed.key !== null && reason !== 'no-identity';
}

/** Opens the mTLS opaque transport to a meshed endpoint (src/proxy/mesh/outbound.ts). */
export interface MeshTcpConnector {
  connectTcp(
    address: Target,
    identity: string,
    timeoutMs: number,
    cb: (socket: net.Socket | null, reason: ConnectFailureReason | null, err?: Error) => void,
  ): { cancel(): void };
}

export type BalancedConnectFailure = ConnectFailureReason | DiscoveryFailureReason;

/** The connected socket (paused) and its pick, or null and why not. */
export type SocketCallback = (
  socket: net.Socket | null,
  pick: EndpointPick | null,
  reason: BalancedConnectFailure | null,
  err?: Error,
) => void;

/**
 * Connects a socket to an endpoint of `target` (the balanced path of opaque TCP and CONNECT):
 * `cb` gets the connected socket (paused) and its pick, whose done() runs with the connect time
 * when the socket closes, so the endpoint counts the connection as load while it lasts. With
 * `mesh`, an endpoint that discovery says is meshed is reached over the mTLS opaque transport.
 */
export function connectBalanced(
  discovery: Discovery | null,
  target: Target,
  timeoutMs: number,
  cb: SocketCallback,
  mesh: MeshTcpConnector | null = null,
): { cancel(): void } {
  const attempt = new SocketAttempt(discovery, target, timeoutMs, cb, mesh);
  pickEndpoint(discovery, target, null, attempt);
  return attempt;
}

/** One balanced socket connect and its one retry (connectBalanced). */
class SocketAttempt implements EndpointSink {
  private cancelled = false;
  private retried = false;
  private current: { pick: EndpointPick; connecting: { cancel(): void } } | null = null;
  /** The first failure, answered when a retry finds no other endpoint. */
  private firstFailure: { reason: ConnectFailureReason; err: Error | undefined } | null = null;

  private readonly discovery: Discovery | null;
  private readonly target: Target;
  private readonly timeoutMs: number;
  private readonly cb: SocketCallback;
  private readonly mesh: MeshTcpConnector | null;

  constructor(
    discovery: Discovery | null,
    target: Target,
    timeoutMs: number,
    cb: SocketCallback,
    mesh: MeshTcpConnector | null,
  ) {
    this.discovery = discovery;
    this.target = target;
    this.timeoutMs = timeoutMs;
    this.cb = cb;
    this.mesh = mesh;
  }

  onEndpoint(outcome: EndpointOutcome): void {
    if (outcome === 'no-other-endpoint') {
      const first = this.firstFailure!;
      if (!this.cancelled) this.cb(null, null, first.reason, first.err);
      return;
    }
    if ('error' in outcome) {
      if (!this.cancelled) this.cb(null, null, outcome.error);
      return;
    }
    const pick = outcome;
    if (this.cancelled) {
      pick.done();
      return;
    }
    const startedAt = performance.now();
    const identity = this.mesh === null ? null : meshIdentityOf(pick.endpoint);
    let finished = false;
    const connected = (socket: net.Socket | null, reason: ConnectFailureReason | null, err?: Error) => {
      finished = true;
      this.current = null;
      if (this.cancelled) {
        socket?.destroy(); // cancel() has reported the pick
        return;
      }
      if (socket === null) {
        if (retriesElsewhere(pick, reason!, this.retried)) {
          this.retried = true;
          this.firstFailure = { reason: reason!, err };
          pickEndpoint(this.discovery, this.target, pick, this);
          return;
        }
        if (countsAgainstEndpoint(reason!)) pick.fail?.();
        pick.done();
        this.cb(null, null, reason, err);
        return;
      }
      const rttMs = performance.now() - startedAt;
      socket.once('close', () => pick.done(rttMs, false));
      this.cb(socket, pick, null);
    };
    const connecting =
      identity === null || this.mesh === null
        ? connectTcp(pick.address, this.timeoutMs, connected)
        : this.mesh.connectTcp(pick.address, identity, this.timeoutMs, connected);
    if (!finished) this.current = { pick, connecting };
  }

  cancel(): void {
    if (this.cancelled) return;
    this.cancelled = true;
    const current = this.current;
    this.current = null;
    if (current !== null) {
      current.connecting.cancel();
      current.pick.done();
    }
  }
}
