// The route level of an HTTP/1 exchange: the Service's routes asked for their decision
// (outbound/routes.ts), and the rule the exchange was forwarded by: its request and response
// header filters, timeouts, retries (and their backoff timer), an HTTPFault's delay, mirrors and
// route metrics, and the request body kept for a retry or a mirror. One per session
// (h1-session.ts), reset for each exchange; the session keeps the connection and its response
// timer, applies what the decision answers itself, and is called back when a timer here runs out.
import { performance } from 'node:perf_hooks';
import type { Target } from '../../core/target.ts';
import type { HeaderModifier } from '../../core/routes/schema-filters.ts';
import type { Direction, ProxyMetrics } from '../telemetry/metrics.ts';
import type { RouteSeries } from '../telemetry/route-metrics.ts';
import type { RequestMirrors } from '../outbound/mirror.ts';
import type { Pick } from '../outbound/discovery.ts';
import { modifyHeaders } from '../../core/routes/filters.ts';
import type { CompiledRule, RouteTable } from '../../core/routes/matcher.ts';
import {
  attemptLimit,
  responseBodyLimit,
  blamesEndpoint,
  countedRetryAfter,
  MAX_RETRY_BODY_BYTES,
  type AttemptFailure,
  type KeptBodies,
  type OutboundRoutes,
  type RouteDecision,
  type RoutePolicyRetry,
  type RouteTimeouts,
  type TimeoutReason,
} from '../outbound/routes.ts';
import type { MessageHead } from './h1-parser.ts';
import type { H1Route } from './h1-client.ts';

/** A route decision that forwards the request. */
export type ForwardDecision = Extract<RouteDecision, { kind: 'forward' }>;

/** Lower-case names to values, for route matching (only when the request's Service has routes). */
export function headerRecord(fields: readonly string[]): Record<string, string> {
  const record: Record<string, string> = {};
  for (let i = 0; i < fields.length; i += 2) {
    const name = fields[i]!.toLowerCase();
    const prior = record[name];
    record[name] = prior === undefined ? fields[i + 1]! : `${prior},${fields[i + 1]!}`;
  }
  return record;
}

/** What the rule's timers call back (the session); each runs inside the owner's fault guard. */
export interface H1RuleOwner {
  /** An HTTPFault's delay is over: the rest of the decision (`then`) applies. */
  onFaultDelayOver(then: RouteDecision): void;
  /** A retry's backoff is over: the request goes again (`failed`: the last attempt's pick). */
  onRetryDue(failed: Pick | null): void;
  fault(where: string, err: unknown): void;
}

export class H1RouteRule {
  /** The rule's response header filters, null when none. */
  responseHeaders: readonly HeaderModifier[] | null = null;
  /** The rule's retries (for a request they may re-send), null: none. */
  retry: RoutePolicyRetry | null = null;
  retriesDone = 0;
  /** The rule's timeouts, null: the proxy's response timeout. */
  timeouts: RouteTimeouts | null = null;
  /** When the exchange must have its answer (performance.now() ms; Infinity: no route limit). */
  deadline = Infinity;
  /** Which limit the running response timer stands for (the reason its 504 names). */
  timeoutReason: TimeoutReason = 'response-timeout';
  /** When the running attempt was sent (performance.now() ms): its backendRequest counts from there. */
  private attemptStart = 0;
  /** RequestMirror backends to copy the request to once it is whole, null: none (or sent). */
  mirrorTargets: readonly Target[] | null = null;
  /** The rule's backend metrics, null: none. */
  series: RouteSeries | null = null;
  /** The rule that forwarded the exchange (a tap event and the span name it), null: none. */
  matched: CompiledRule | null = null;
  /** The request body as sent, kept for a retry or mirror (content-length bodies up to 64 KiB), or null. */
  body: Buffer[] | null = null;
  /** Where the room for `body` was taken (the proxy's KeptBodies), and how much; given back by releaseBody. */
  private keptIn: KeptBodies | null = null;
  private keptBytes = 0;
  /** An HTTPFault's delay in progress. */
  private faultTimer: NodeJS.Timeout | null = null;
  private retryTimer: NodeJS.Timeout | null = null;
  /** The failed attempt's pick while a retry waits (reported when the retry goes or is dropped). */
  private retryPick: Pick | null = null;

  /**
   * What the routes of the request's Service say for `head` as routed to `route` (matched on its
   * method, path, headers and authority); null when the Service port has no routes.
   */
  decide(routes: OutboundRoutes, table: RouteTable, route: H1Route, head: MessageHead): RouteDecision | null {
    return routes.decide(route.target, table, {
      method: head.method,
      pathAndQuery: route.path,
      headers: headerRecord(head.headers),
      grpc: false,
      authority: route.host ?? head.host ?? '',
    });
  }

  /**
   * Takes the rule of a forwarded request: its request header filters applied to `head`, and
   * where it now goes (the rule's backend, path and authority).
   */
  forwardBy(
    decision: ForwardDecision,
    head: MessageHead,
    route: H1Route,
    mirrors: RequestMirrors | null | undefined,
    kept: KeptBodies | null,
  ): H1Route {
    for (const modifier of decision.requestHeaders) head.headers = modifyHeaders(modifier, head.headers);
    this.adopt(decision, head, mirrors, kept);
    return { target: decision.target, path: decision.pathAndQuery, host: decision.authority ?? route.host };
  }

  /** The rule's response header filters applied to a response `head` on its way to the client. */
  filterResponse(head: MessageHead): void {
    const modifiers = this.responseHeaders;
    if (modifiers === null) return;
    for (const modifier of modifiers) head.headers = modifyHeaders(modifier, head.headers);
  }

  /** An HTTPFault's delay: `owner` hears after `ms` (unless the exchange ends first). */
  delay(ms: number, then: RouteDecision, owner: H1RuleOwner): void {
    this.faultTimer = setTimeout(() => {
      this.faultTimer = null;
      try {
        owner.onFaultDelayOver(then);
      } catch (err) {
        owner.fault('h1 fault delay', err);
      }
    }, ms);
  }

  /**
   * A retry after the backoff `ms` (retryDelay): the failed attempt's endpoint takes the
   * breaker's verdict now, and `owner` sends the request again when the backoff is over.
   */
  retryLater(ms: number, failed: Pick | null, failure: AttemptFailure, owner: H1RuleOwner): void {
    if (blamesEndpoint(failure)) failed?.fail?.(); // the circuit breaker's verdict
    this.retryPick = failed;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      this.retryPick = null;
      try {
        owner.onRetryDue(failed);
      } catch (err) {
        owner.fault('h1 retry', err);
      }
    }, ms);
  }

  /** The exchange ended: a fault's delay stops, a retry waiting for its backoff is dropped (its last pick reported). */
  cancelTimers(): void {
    if (this.faultTimer !== null) {
      clearTimeout(this.faultTimer);
      this.faultTimer = null;
    }
    if (this.retryTimer === null) return;
    clearTimeout(this.retryTimer);
    this.retryTimer = null;
    const pick = this.retryPick;
    this.retryPick = null;
    pick?.done();
  }

  /** Takes the rule of a forwarded request `head`; mirrors that cannot get its body are dropped. */
  private adopt(
    decision: ForwardDecision,
    head: MessageHead,
    mirrors: RequestMirrors | null | undefined,
    kept: KeptBodies | null,
  ): void {
    this.responseHeaders = decision.responseHeaders.length > 0 ? decision.responseHeaders : null;
    const timeouts = decision.timeouts;
    this.timeouts = timeouts;
    this.series = decision.series;
    this.matched = decision.rule;
    this.deadline = timeouts?.requestMs == null ? Infinity : performance.now() + timeouts.requestMs;
    // Retries re-send the request: not an upgrade, and a body only when it has a length of at
    // most MAX_RETRY_BODY_BYTES (kept as it is forwarded; a chunked one is not retried).
    const retry = decision.retry;
    const bodyless = head.bodyKind === 'none' || (head.bodyKind === 'length' && head.contentLength === 0);
    this.retry =
      retry !== null &&
      retry.retries > 0 &&
      head.upgrade === null &&
      (bodyless || (head.bodyKind === 'length' && head.contentLength <= MAX_RETRY_BODY_BYTES))
        ? retry
        : null;
    this.mirrorTargets = decision.mirrors.length > 0 ? decision.mirrors : null;
    // The body is kept as it is forwarded when a retry or a mirror may send it again: only one
    // with a length of at most MAX_RETRY_BODY_BYTES, and only while the proxy's kept bodies
    // together have room for it (KeptBodies); otherwise the request is neither retried nor mirrored.
    const wanted = (this.retry !== null || this.mirrorTargets !== null) && !bodyless;
    const keepable = head.bodyKind === 'length' && head.contentLength <= MAX_RETRY_BODY_BYTES;
    const keeps = wanted && keepable && (kept === null || kept.take(head.contentLength));
    if (keeps && kept !== null) {
      this.keptIn = kept;
      this.keptBytes = head.contentLength;
    }
    if (wanted && !keeps) {
      this.retry = null;
      if (this.mirrorTargets !== null) mirrors?.drop(this.mirrorTargets.length);
      this.mirrorTargets = null;
    }
    this.body = keeps ? [] : null;
    this.retriesDone = 0;
  }

  /** Gives back the room the kept body took (the exchange, or its connection, ended). */
  releaseBody(): void {
    this.body = null;
    if (this.keptIn === null) return;
    this.keptIn.give(this.keptBytes);
    this.keptIn = null;
    this.keptBytes = 0;
  }

  /** The next attempt's response timeout in ms (0: none); timeoutReason says which limit it is. */
  attemptTimeout(responseTimeoutMs: number): number {
    if (this.timeouts === null) return responseTimeoutMs;
    this.attemptStart = performance.now();
    const limit = attemptLimit(this.deadline, this.timeouts, responseTimeoutMs, this.attemptStart);
    this.timeoutReason = limit.reason;
    return limit.ms;
  }

  /** Once the response head is in: what is left of the route's limits for its body, null: none. */
  bodyTimeout(): { readonly ms: number; readonly reason: TimeoutReason } | null {
    if (this.timeouts === null) return null;
    return responseBodyLimit(this.deadline, this.timeouts, this.attemptStart, performance.now());
  }

  /**
   * Whether a failed attempt goes again (counted): the backoff in ms; null when the rule does not
   * retry it (or the budget is spent), 'deadline' when only the exchange's deadline stops it.
   */
  retryDelay(
    failure: AttemptFailure,
    metrics: ProxyMetrics,
    direction: Direction,
  ): number | null | 'deadline' {
    const delay = countedRetryAfter(
      this.retry!,
      this.retriesDone,
      failure,
      this.deadline,
      metrics,
      direction,
      this.series,
    );
    if (typeof delay === 'number') this.retriesDone++;
    return delay;
  }

  /** Copies the whole request (as sent upstream: `head`, `path`) to the rule's mirrors. */
  sendMirrors(mirrors: RequestMirrors | null | undefined, head: MessageHead, path: string): void {
    const targets = this.mirrorTargets!;
    this.mirrorTargets = null;
    mirrors?.send(targets, {
      method: head.method,
      pathAndQuery: path,
      headers: headerRecord(head.headers),
      body: this.body ?? [],
      h2: false,
    });
  }

  reset(): void {
    this.cancelTimers();
    this.responseHeaders = null;
    this.timeouts = null;
    this.deadline = Infinity;
    this.timeoutReason = 'response-timeout';
    this.releaseBody();
    this.mirrorTargets = null;
    this.series = null;
    this.matched = null;
    this.retry = null;
  }
}
