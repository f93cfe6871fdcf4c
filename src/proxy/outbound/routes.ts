// The route level of the outbound stack, once for HTTP/1 and HTTP/2 (gRPC): for a request to a
// Service (a logical target), the Gateway API routes attached to that Service port decide where
// it goes. The table of routes comes from the control plane (src/proxy/route/watch-client.ts, one
// watch per Service port, started by the first request to it and kept); matching, the weighted
// backend, the filters and the timeouts are the pure functions of src/core/routes. The protocols
// turn the decision into their own terms (h1-session.ts, h2-exchange.ts).
//
// A Service port with no routes attached is served as before (the decision is null). With
// routes, a request that matches no rule is answered 404 (route-not-found); a rule whose picked
// backend does not exist, or that uses a filter Trellis does not implement, 500. A route applies
// only to traffic addressed to the Service: an endpoint's address is not a logical target and
// never reaches this file.
//
// A rule's HTTPFaults (src/core/routes/fault.ts) are drawn before anything else of the rule: an
// abort is answered with the fault's status (fault-injected), a delay wraps the rest of the
// decision, which the protocol applies once the delay is over. The delay counts against the
// rule's timeouts.request: one at least as long answers 504 request-timeout when the timeout ends.
//
// The first request to a Service port waits for its first table (at most `waitMs`, the
// discovery's fail-fast wait), so a route attached before the request is never skipped; when the
// watch fails first (a control plane without the Routes API answers UNIMPLEMENTED at once) or no
// answer comes in time, requests go on as without routes until a table arrives. Watches are
// bounded (MAX_WATCHED, Service ports however spelled): past that, the Service port asked for
// least recently stops being watched to make room (a warning says so once); only while every
// one still awaits its first table is a further Service port served without routes.
import { performance } from 'node:perf_hooks';
import type { Logger } from '../../core/log.ts';
import { unitDraw, unseededRandom, type Random } from '../../core/random.ts';
import type { CompiledFault } from '../../core/routes/fault.ts';
import { pickBackend, type CompiledBackend } from '../../core/routes/backends.ts';
import { modifyPath, redirectResponse, splitHost } from '../../core/routes/filters.ts';
import {
  matchRoute,
  NO_MATCHING_RULE,
  type CompiledRule,
  type RequestHeaders,
  type RouteName,
} from '../../core/routes/matcher.ts';
import type { HeaderModifier } from '../../core/routes/schema-filters.ts';
import { TargetMap, type Target } from '../../core/target.ts';
import { canonicalName } from '../resolve/mesh-names.ts';
import type { RouteWatch, RouteWatchOptions } from '../route/watch-client.ts';
import { routePolicyKey, type PolicedRouteTable } from '../route/route-table.ts';
import {
  NO_TRAFFIC_POLICY,
  sameBudget,
  type ServiceTrafficPolicy,
} from '../../core/routes/service-annotations.ts';
import { RetryBudget } from './retry-budget.ts';
import type { RouteMetrics, RouteSeries } from '../telemetry/route-metrics.ts';
import type { Direction, ProxyMetrics } from '../telemetry/metrics.ts';
import { MIRRORED_HEADER } from './mirror.ts';

const NO_MIRRORS: readonly Target[] = [];
const NO_MODIFIERS: readonly HeaderModifier[] = [];
import { hasDotSegment, resolveDotSegments } from '../policy/match.ts';

/** At most this many Service ports are watched for routes by one proxy. */
export const MAX_WATCHED = 1000;
/** At most this many spellings of the watched Service ports are remembered (`web`, `web.ns`, ...). */
const MAX_SPELLINGS = 4 * MAX_WATCHED;

/** The Service a logical target names, as the Gateway API's parentRefs and backendRefs do. */
export interface ServicePort {
  readonly namespace: string;
  readonly name: string;
  readonly port: number;
}

/** What a protocol tells the route level about one request. */
export interface RoutedRequest {
  readonly method: string;
  /** The request-target's path and query, as it goes upstream ("/a/b?x=1"). */
  readonly pathAndQuery: string;
  /** Lower-case names (node's header objects; the HTTP/1 path builds one only when routes apply). */
  readonly headers: RequestHeaders;
  readonly grpc: boolean;
  /** The Host / :authority the client sent (redirects keep its host). */
  readonly authority: string;
}

export type RouteRefusal = 'route-not-found' | 'backend-not-found' | 'route-unsupported';

/**
 * The route's limits on an exchange: timeouts.request (or timeout.trellis.io/request) bounds the
 * whole exchange, retries and backoffs included; timeouts.backendRequest (or
 * retry.trellis.io/timeout) each attempt. Each 504 names which one fired.
 */
export interface RouteTimeouts {
  /** The whole exchange, null: none (the proxy's response timeout still bounds each attempt). */
  readonly requestMs: number | null;
  /** Each attempt, null: the proxy's response timeout. */
  readonly attemptMs: number | null;
}

export type TimeoutReason = 'request-timeout' | 'backend-request-timeout' | 'response-timeout';

/**
 * The longest a Node timer waits (about 24.8 days): a longer delay fires after 1 ms instead.
 * Every limit and backoff a route, an annotation or a client's grpc-timeout asks for is cut to it
 * (a Gateway API duration reaches 99999h, a grpc-timeout 99999999H).
 */
export const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * The first of the limits on an attempt sent at `attemptStart`, seen at `now`: the exchange's
 * deadline (`deadline`, absolute, Infinity: none), the attempt's backendRequest and `headMs`
 * (the proxy's response timeout, Infinity: none). `ms` is Infinity when nothing bounds it.
 */
function firstLimit(
  deadline: number,
  timeouts: RouteTimeouts | null,
  attemptStart: number,
  now: number,
  headMs: number,
): { ms: number; reason: TimeoutReason } {
  let ms = headMs;
  let reason: TimeoutReason = 'response-timeout';
  const attempt = timeouts?.attemptMs ?? null;
  // (attempt minus the time spent, so that an attempt starting now gets exactly `attempt`)
  if (attempt !== null && attempt > 0 && attempt - (now - attemptStart) <= ms) {
    ms = attempt - (now - attemptStart);
    reason = 'backend-request-timeout';
  }
  if (deadline !== Infinity && deadline - now <= ms) {
    ms = deadline - now;
    reason = 'request-timeout';
  }
  return { ms, reason };
}

/** A limit as a timer's delay: at least 1 ms, at most what a Node timer holds. */
const timerMs = (ms: number): number => Math.min(MAX_TIMER_MS, Math.max(1, Math.ceil(ms)));

/**
 * How long the attempt starting at `now` may wait for its response, and the reason its 504 names:
 * the first of the exchange's deadline (`deadline`, absolute, Infinity: none), the attempt's
 * limit and the proxy's response timeout (0: off). `ms` is 0 when nothing bounds it.
 */
export function attemptLimit(
  deadline: number,
  timeouts: RouteTimeouts | null,
  responseTimeoutMs: number,
  now: number,
): { readonly ms: number; readonly reason: TimeoutReason } {
  const limit = firstLimit(
    deadline,
    timeouts,
    now,
    now,
    responseTimeoutMs > 0 ? responseTimeoutMs : Infinity,
  );
  return { ms: limit.ms === Infinity ? 0 : timerMs(limit.ms), reason: limit.reason };
}

/**
 * What is left, once a response head is in, of the route's limits: the request timeout's
 * `deadline` and this attempt's backendRequest (from `attemptStart`). Both cover the whole
 * response, its body too (the Gateway API: the request timeout covers "as close to the whole
 * request-response transaction as possible", backendRequest lasts "to when the full response has
 * been received"; Envoy's route timeout does the same); the proxy's own response timeout only
 * bounds the wait for the head, so a streamed body without a route timeout runs on. Null when the
 * route sets neither.
 */
export function responseBodyLimit(
  deadline: number,
  timeouts: RouteTimeouts | null,
  attemptStart: number,
  now: number,
): { readonly ms: number; readonly reason: TimeoutReason } | null {
  const limit = firstLimit(deadline, timeouts, attemptStart, now, Infinity);
  return limit.ms === Infinity ? null : { ms: timerMs(limit.ms), reason: limit.reason };
}

/** A rule's retries (Gateway API HTTPRouteRetry) and the Service port's budget they draw on. */
export interface RoutePolicyRetry {
  /** Response statuses that are retried. */
  readonly codes: readonly number[];
  /** gRPC statuses that are retried (annotation retry.trellis.io/grpc). */
  readonly grpcCodes: readonly number[];
  /** Retries after the first attempt. */
  readonly retries: number;
  /** The first backoff; each next one doubles, each drawn in [d/2, d] (jitter). */
  readonly backoffMs: number;
  readonly budget: RetryBudget;
}

/** The body of a proxy-made 504: which limit fired. */
export function timeoutMessage(reason: TimeoutReason, timeouts: RouteTimeouts | null): string {
  if (reason === 'request-timeout')
    return `no response within the route's ${timeouts?.requestMs} ms request timeout`;
  if (reason === 'backend-request-timeout')
    return `no response within the route's ${timeouts?.attemptMs} ms per attempt`;
  return 'upstream did not respond in time';
}

/** The log line of a response cut off by responseBodyLimit (its head already went out). */
export function bodyTimeoutMessage(reason: TimeoutReason, timeouts: RouteTimeouts | null): string {
  if (reason === 'backend-request-timeout')
    return `the response did not complete within the route's ${timeouts?.attemptMs} ms per attempt`;
  return `the response did not complete within the route's ${timeouts?.requestMs} ms request timeout`;
}

/** A request body kept for retries is at most this long; a longer one is not retried. */
export const MAX_RETRY_BODY_BYTES = 64 * 1024;

/**
 * The request bodies one proxy keeps for retries and mirrors, every exchange together (HTTP/1
 * and HTTP/2): 512 bodies of 64 KiB. Without it the bound was the connections times the streams
 * (128 per HTTP/2 connection, 8 MiB a connection).
 */
export const MAX_KEPT_BODY_BYTES = 32 * 1024 * 1024;

/**
 * The bytes of request bodies kept for retries and mirrors by one proxy (OutboundRoutes.keptBodies).
 * An exchange takes room for what it keeps and gives it back when it ends; a body that does not
 * fit is not kept, and its request is then neither retried nor mirrored (as one over 64 KiB).
 */
export class KeptBodies {
  private used = 0;
  readonly max: number;

  constructor(max = MAX_KEPT_BODY_BYTES) {
    this.max = max;
  }

  /** The bytes kept now. */
  get bytes(): number {
    return this.used;
  }

  /** Takes room for `n` more bytes; false (nothing taken) when they do not fit. */
  take(n: number): boolean {
    if (this.used + n > this.max) return false;
    this.used += n;
    return true;
  }

  /** Gives back `n` bytes taken before. */
  give(n: number): void {
    this.used = Math.max(0, this.used - n);
  }
}

/** How an attempt failed, for the retry policy: an HTTP status, a gRPC status, or no answer in time. */
export type AttemptFailure =
  { readonly status: number; readonly grpcStatus: number | null } | { readonly timedOut: true };

/**
 * Whether a retried attempt's failure counts against its endpoint (circuit breaking): no answer
 * in time, a 5xx, or a gRPC failure status; a retried 4xx (429, ...) does not.
 */
export function blamesEndpoint(failure: AttemptFailure): boolean {
  return 'timedOut' in failure || failure.status >= 500 || failure.grpcStatus !== null;
}

/**
 * Whether the attempt that failed with `failure` is tried again, once `done` retries have been
 * made: the backoff before the next attempt (exponential from the policy's first backoff, each
 * drawn in [d/2, d]); 'budget-exhausted' when the policy would retry but its budget does not
 * allow it (the caller counts it); 'deadline' when the exchange's deadline would pass during the
 * backoff; null when the policy does not retry this failure. Withdraws from the budget when it retries.
 * A timed-out attempt is retried whatever the codes (linkerd's retry.linkerd.io/timeout habit).
 */
export function retryAfter(
  retry: RoutePolicyRetry,
  done: number,
  failure: AttemptFailure,
  deadline: number,
  now: number,
  random: Random,
): number | 'budget-exhausted' | 'deadline' | null {
  if (done >= retry.retries) return null;
  if (!('timedOut' in failure)) {
    const byGrpc = failure.grpcStatus !== null && retry.grpcCodes.includes(failure.grpcStatus);
    if (!byGrpc && !retry.codes.includes(failure.status)) return null;
  }
  const base = retry.backoffMs * 2 ** done;
  const delay = Math.min(MAX_TIMER_MS, base / 2 + random.next() * (base / 2));
  if (now + delay >= deadline) return 'deadline';
  if (!retry.budget.tryWithdraw()) return 'budget-exhausted';
  return delay;
}

/** The random draws of retry backoffs (one generator per process; no allocation per draw). */
export const retryRandom: Random = unseededRandom();

/**
 * retryAfter for a protocol's exchange (HTTP/1, HTTP/2 and gRPC alike), with its outcome counted
 * in the one place: the proxy's retry pair (retried, budget exhausted) and the rule's series. The
 * backoff in ms when the attempt goes again; null when it does not (the policy does not retry it,
 * or the budget is spent); 'deadline' when only the exchange's deadline stops it.
 */
export function countedRetryAfter(
  retry: RoutePolicyRetry,
  done: number,
  failure: AttemptFailure,
  deadline: number,
  metrics: Pick<ProxyMetrics, 'retried'>,
  direction: Direction,
  series: RouteSeries | null,
): number | 'deadline' | null {
  const delay = retryAfter(retry, done, failure, deadline, performance.now(), retryRandom);
  if (delay === null || delay === 'deadline') return delay;
  const outcome = delay === 'budget-exhausted' ? 'budget-exhausted' : 'retried';
  metrics.retried(direction, outcome);
  series?.retried(outcome);
  return delay === 'budget-exhausted' ? null : delay;
}

/** Retries when `attempts` is not given (the spec leaves the default to implementations). */
export const DEFAULT_RETRIES = 1;
/** The first backoff when `backoff` is not given (Envoy's base interval). */
export const DEFAULT_BACKOFF_MS = 25;

/**
 * A request's timeouts: the rule's (0 means none) where it sets them, else the annotations'
 * (timeout.trellis.io/request, retry.trellis.io/timeout when retries are annotated).
 */
function timeoutsOf(
  rule: CompiledRule | null,
  policy: ServiceTrafficPolicy,
  delayedMs = 0,
): RouteTimeouts | null {
  const set = (ms: number | null | undefined) => (ms === 0 || ms === undefined ? null : ms);
  let requestMs =
    rule !== null && rule.requestTimeoutMs !== null ? set(rule.requestTimeoutMs) : policy.requestTimeoutMs;
  const attemptMs =
    rule !== null && rule.backendRequestTimeoutMs !== null
      ? set(rule.backendRequestTimeoutMs)
      : (policy.retry?.timeoutMs ?? null);
  // An injected delay (HTTPFault) has spent part of the request's time already.
  if (requestMs !== null) requestMs = Math.max(1, requestMs - delayedMs);
  return requestMs === null && attemptMs === null ? null : { requestMs, attemptMs };
}

/** Where the route level sends a request. */
export type RouteDecision =
  | {
      readonly kind: 'refuse';
      readonly reason: RouteRefusal | 'request-timeout';
      readonly message: string;
      /** The rule that matched (null: none did, route-not-found). */
      readonly rule: CompiledRule | null;
    }
  /** An HTTPFault's abort: answer `status` (a gRPC request: `grpcStatus`) with reason fault-injected. */
  | {
      readonly kind: 'abort';
      readonly status: number;
      readonly grpcStatus: number;
      readonly message: string;
      readonly rule: CompiledRule;
    }
  /** An HTTPFault's delay: wait `ms` (clearing the timer if the client goes away), then apply `then`. */
  | { readonly kind: 'delay'; readonly ms: number; readonly then: RouteDecision }
  | {
      readonly kind: 'redirect';
      readonly status: number;
      readonly location: string;
      readonly rule: CompiledRule;
    }
  | {
      readonly kind: 'forward';
      /** The backend Service port, as a logical target for discovery. */
      readonly target: Target;
      readonly pathAndQuery: string;
      /** A new Host / :authority (URLRewrite hostname), or null to keep the client's. */
      readonly authority: string | null;
      /** Applied in order to the request's fields (the rule's, then the backend's). */
      readonly requestHeaders: readonly HeaderModifier[];
      readonly responseHeaders: readonly HeaderModifier[];
      /** The route's limits (attemptLimit), null: the proxy's response timeout only. */
      readonly timeouts: RouteTimeouts | null;
      /** The rule's retry policy (HTTPRoute `retry`), null: no retries. */
      readonly retry: RoutePolicyRetry | null;
      /** RequestMirror backends this request is copied to (the rule's, drawn by their percentages). */
      readonly mirrors: readonly Target[];
      /** Where the request's route metrics go; null: not recorded per route. */
      readonly series: RouteSeries | null;
      /** The rule that matched, null when only the Service's annotations apply. */
      readonly rule: CompiledRule | null;
      readonly backend: CompiledBackend | null;
    };

/** Starts a watch (watch-client.ts watchRoutes; injected by tests). */
export type StartRouteWatch = (options: RouteWatchOptions) => RouteWatch;

export interface OutboundRoutesOptions {
  /** The control plane's gRPC address. */
  readonly address: string;
  /** This proxy's workload namespace: short names are its Services, its consumer routes apply. */
  readonly namespace: string;
  readonly waitMs: number;
  readonly log: Logger;
  readonly random?: Random;
  /** Where route metrics go; absent: not recorded per route. */
  readonly metrics?: RouteMetrics | null;
  /** Default: the real watch client, loaded on first use (it brings gRPC). */
  readonly startWatch?: StartRouteWatch;
  /**
   * Told of each watched Service port's traffic policy as it arrives (null: none), for the
   * backend level's circuit breaking (ServiceDiscovery.applyTrafficPolicy).
   */
  readonly onPolicy?: (service: ServicePort, policy: ServiceTrafficPolicy | null) => void;
  /** Told of each fault injected (for trellis_route_faults_total). */
  readonly onFault?: (kind: 'abort' | 'delay') => void;
  /** The bound on kept request bodies (default MAX_KEPT_BODY_BYTES; tests lower it). */
  readonly maxKeptBodyBytes?: number;
}

interface Watched {
  /** Its Service port ("ns/name:port"), the key of byService. */
  readonly key: string;
  /** When it was last asked for (OutboundRoutes.uses at the time): the least recent goes first. */
  used: number;
  table: PolicedRouteTable | null;
  /** The retry budget of this Service port, made when a rule first asks for retries. */
  budget: RetryBudget | null;
  /** The policy `budget` was made with. */
  budgetPolicy: ServiceTrafficPolicy['budget'] | null;
  /** Until the first table arrives (or the wait ends): the requests waiting for it. */
  first: Promise<PolicedRouteTable | null> | null;
  watch: RouteWatch | null;
}

export class OutboundRoutes {
  private readonly opts: OutboundRoutesOptions;
  private readonly random: Random;
  /** By Service port ("ns/name:port"): one watch and one retry budget, however it is spelled. */
  private readonly byService = new Map<string, Watched>();
  /**
   * The same entries by the target as the client spelled it (`web`, `WEB.shop.`, ...): tableFor
   * runs per request (TargetMap: no key string built). At most MAX_SPELLINGS; further spellings
   * are looked up by their Service port.
   */
  private readonly watched = new TargetMap<Watched>();
  /** Each compiled backend's route metrics (a table compiled again makes new backends). */
  private readonly series = new WeakMap<CompiledBackend, RouteSeries | null>();
  /** Each compiled backend's Service port as a logical target. */
  private readonly backendTargets = new WeakMap<CompiledBackend, Target>();
  private warnedFull = false;
  private closed = false;
  /** Requests asked for a table so far (the order of Watched.used). */
  private uses = 0;
  /** Service ports no longer watched to make room (tests read it). */
  evicted = 0;
  /**
   * Each compiled route's own policy (its annotations over the Service's; null: none), looked up
   * once per compiled table instead of by a key string built per request.
   */
  private readonly routePolicies = new WeakMap<
    RouteName,
    { readonly table: PolicedRouteTable; readonly policy: ServiceTrafficPolicy | null }
  >();

  /** Request bodies kept for retries and mirrors, by every exchange of this proxy. */
  readonly keptBodies: KeptBodies;

  constructor(opts: OutboundRoutesOptions) {
    this.opts = opts;
    this.random = opts.random ?? unseededRandom();
    this.keptBodies = new KeptBodies(opts.maxKeptBodyBytes);
  }

  /**
   * The routes attached to the Service port `target` names: the table (null when none are), at
   * once when known, else a promise of it (the first request to that Service port).
   */
  tableFor(target: Target): PolicedRouteTable | null | Promise<PolicedRouteTable | null> {
    const known = this.entryOf(target);
    if (known !== undefined) {
      known.used = ++this.uses;
      return known.first ?? known.table;
    }
    const service = serviceOf(target, this.opts.namespace);
    if (service === null || this.closed) return null;
    // Full: the Service port asked for least recently stops being watched, so that names asked
    // for once (a client naming a thousand of them, or two-label external names such as
    // example.com, which read as Service example of namespace com) never crowd out the rest.
    if (this.byService.size >= MAX_WATCHED && !this.evictLeastUsed()) return null;
    const key = servicePortKey(service);
    const entry: Watched = {
      key,
      used: ++this.uses,
      table: null,
      budget: null,
      budgetPolicy: null,
      first: null,
      watch: null,
    };
    entry.first = this.startWatch(entry, service);
    this.byService.set(key, entry);
    if (this.watched.size < MAX_SPELLINGS) this.watched.set(target, entry);
    return entry.first;
  }

  /** Stops watching the Service port asked for least recently (not one still awaiting its first table); false when none can go. */
  private evictLeastUsed(): boolean {
    let oldest: Watched | null = null;
    for (const entry of this.byService.values())
      if (entry.first === null && (oldest === null || entry.used < oldest.used)) oldest = entry;
    if (oldest === null) return false;
    oldest.watch?.close();
    this.byService.delete(oldest.key);
    this.watched.clear(); // the spellings of every entry are found again by Service port
    this.evicted++;
    if (!this.warnedFull) {
      this.warnedFull = true;
      this.opts.log.warn(
        'routes are watched for too many services; the least recently used ones are dropped',
        {
          max: MAX_WATCHED,
        },
      );
    }
    return true;
  }

  /**
   * The watched Service port `target` names, by its spelling when known, else by the Service port
   * (a new spelling of it is remembered, up to MAX_SPELLINGS): every spelling of one Service port
   * shares its table and its retry budget, so a client cannot get a budget (nor a watch) per
   * spelling.
   */
  private entryOf(target: Target): Watched | undefined {
    const known = this.watched.get(target);
    if (known !== undefined) return known;
    const service = serviceOf(target, this.opts.namespace);
    if (service === null) return undefined;
    const entry = this.byService.get(servicePortKey(service));
    if (entry !== undefined && this.watched.size < MAX_SPELLINGS) this.watched.set(target, entry);
    return entry;
  }

  /** Loads the Routes client (once), before the first Service port needs it (warm-up.ts). */
  async preload(): Promise<void> {
    if (this.opts.startWatch === undefined) await import('../route/watch-client.ts');
  }

  private async startWatch(entry: Watched, service: ServicePort): Promise<PolicedRouteTable | null> {
    const start = this.opts.startWatch ?? (await import('../route/watch-client.ts')).watchRoutes;
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        entry.first = null;
        resolve(entry.table);
      }, this.opts.waitMs);
      timer.unref();
      if (this.closed) {
        clearTimeout(timer);
        entry.first = null;
        resolve(null);
        return;
      }
      entry.watch = start({
        address: this.opts.address,
        clientNamespace: this.opts.namespace,
        namespace: service.namespace,
        service: service.name,
        port: service.port,
        log: this.opts.log,
        onEnd: () => {
          if (entry.first === null) return;
          clearTimeout(timer);
          entry.first = null;
          resolve(entry.table);
        },
        onTable: (table) => {
          this.opts.onPolicy?.(service, table.policy ?? null);
          entry.table =
            table.http === null && table.grpc === null && table.policy === undefined ? null : table;
          // A budget made for the previous policy stays (its counts are the Service's), unless
          // the policy's budget changed (compared by value: every update is decoded anew).
          const budgetPolicy = (table.policy ?? NO_TRAFFIC_POLICY).budget;
          if (entry.budget !== null && !sameBudget(entry.budgetPolicy!, budgetPolicy)) {
            entry.budget = null;
          }
          if (entry.first !== null) {
            clearTimeout(timer);
            entry.first = null;
            resolve(entry.table);
          }
        },
      });
    });
  }

  /**
   * Where `request` to the Service port `target` (whose table is `table`) goes; null: no route
   * applies (as before).
   */
  decide(target: Target, table: PolicedRouteTable, request: RoutedRequest): RouteDecision | null {
    const query = request.pathAndQuery.indexOf('?');
    const sent = query === -1 ? request.pathAndQuery : request.pathAndQuery.slice(0, query);
    // A path with dot-segments ("/public/../admin", also percent-encoded) is matched and sent on
    // as the app would resolve it (policy/match.ts), as Envoy's path normalisation does: a rule
    // for /admin is not bypassed, and the backend gets the path the rule saw.
    const path = hasDotSegment(sent) ? resolveDotSegments(sent) : sent;
    const queryText = query === -1 ? '' : request.pathAndQuery.slice(query + 1);
    const matched = matchRoute(table, {
      method: request.method,
      path,
      query: queryText,
      headers: request.headers,
      grpc: request.grpc,
    });
    const servicePolicy = table.policy ?? NO_TRAFFIC_POLICY;
    if (matched === null) return this.policyOnly(target, servicePolicy, request);
    if (matched === NO_MATCHING_RULE) {
      return {
        kind: 'refuse',
        reason: 'route-not-found',
        message: `no route rule matches ${request.method} ${path}`,
        rule: null,
      };
    }
    const { rule, matchedPrefix } = matched;
    const policy =
      table.routePolicies === undefined
        ? servicePolicy
        : (this.routePolicyOf(table, rule.route) ?? servicePolicy);
    if (rule.failure !== null)
      return {
        kind: 'refuse',
        reason: 'route-unsupported',
        message: `${ruleName(rule)}: ${rule.failure}`,
        rule,
      };
    return rule.faults.length === 0
      ? this.decideRule(target, request, matched.rule, matchedPrefix, path, queryText, 0, policy)
      : this.withFaults(target, request, rule, matchedPrefix, path, queryText, policy);
  }

  /**
   * The rule's faults drawn for one request (each delay and abort by its own percentage; delays
   * add up, the first abort drawn answers), and the decision that follows them.
   */
  private withFaults(
    target: Target,
    request: RoutedRequest,
    rule: CompiledRule,
    matchedPrefix: string | null,
    path: string,
    queryText: string,
    policy: ServiceTrafficPolicy,
  ): RouteDecision {
    let delayMs = 0;
    let abort: CompiledFault | null = null;
    for (const fault of rule.faults) {
      if (fault.delayChance > 0 && unitDraw(this.random) < fault.delayChance) delayMs += fault.delayMs;
      if (abort === null && fault.abortChance > 0 && unitDraw(this.random) < fault.abortChance) abort = fault;
    }
    if (delayMs === 0 && abort === null)
      return this.decideRule(target, request, rule, matchedPrefix, path, queryText, 0, policy);
    const onFault = this.opts.onFault;
    if (delayMs > 0) onFault?.('delay');
    const limit =
      rule.requestTimeoutMs === null || rule.requestTimeoutMs === 0 ? null : rule.requestTimeoutMs;
    if (limit !== null && delayMs >= limit) {
      return {
        kind: 'delay',
        ms: limit,
        then: {
          kind: 'refuse',
          reason: 'request-timeout',
          message: `${ruleName(rule)}: timeouts.request (${limit} ms) passed during an injected delay`,
          rule,
        },
      };
    }
    let then: RouteDecision;
    if (abort !== null) {
      onFault?.('abort');
      then = {
        kind: 'abort',
        status: abort.abortHttpStatus,
        grpcStatus: abort.abortGrpcStatus,
        message: `${ruleName(rule)}: HTTPFault ${abort.name} aborted the request`,
        rule,
      };
    } else then = this.decideRule(target, request, rule, matchedPrefix, path, queryText, delayMs, policy);
    return delayMs === 0 ? then : { kind: 'delay', ms: delayMs, then };
  }

  /** The rule's redirect or backend, with its filters; `delayedMs` already spent on an injected delay. */
  private decideRule(
    target: Target,
    request: RoutedRequest,
    rule: CompiledRule,
    matchedPrefix: string | null,
    path: string,
    queryText: string,
    delayedMs: number,
    policy: ServiceTrafficPolicy,
  ): RouteDecision {
    if (rule.redirect !== null) {
      const authority = splitHost(request.authority);
      const r = redirectResponse(
        rule.redirect,
        { scheme: 'http', host: authority.host, port: authority.port ?? 80, path, query: queryText },
        matchedPrefix,
      );
      return { kind: 'redirect', status: r.status, location: r.location, rule };
    }
    const backend = pickBackend(rule.backends, this.random);
    if (backend === null || !backend.resolved) {
      const which =
        backend === null
          ? 'no backend with weight'
          : `backend ${backend.namespace}/${backend.name}:${backend.port} does not exist`;
      return { kind: 'refuse', reason: 'backend-not-found', message: `${ruleName(rule)}: ${which}`, rule };
    }
    // One Target per compiled backend: discovery and the pools see the same object every request.
    let backendTarget = this.backendTargets.get(backend);
    if (backendTarget === undefined) {
      backendTarget = { host: `${backend.name}.${backend.namespace}.svc`, port: backend.port };
      this.backendTargets.set(backend, backendTarget);
    }
    if (this.opts.onPolicy !== undefined) {
      // The backend's own Service annotations (circuit breaking) come with its own watch, asked
      // for with each request like the parent's, so it is not the least recently used one that
      // makes room (and is watched again if it did).
      const watchedBackend = this.watched.get(backendTarget);
      if (watchedBackend !== undefined) watchedBackend.used = ++this.uses;
      else void this.tableFor(backendTarget);
    }
    // Most rules modify no headers: they share one empty list instead of two new ones a request.
    let requestHeaders: HeaderModifier[] | readonly HeaderModifier[] = NO_MODIFIERS;
    let responseHeaders: HeaderModifier[] | readonly HeaderModifier[] = NO_MODIFIERS;
    if (rule.requestHeaders !== null) requestHeaders = [rule.requestHeaders];
    if (rule.responseHeaders !== null) responseHeaders = [rule.responseHeaders];
    let rewrittenPath = path;
    let rewrittenHost: string | null = null;
    const rewrite = rule.rewrite;
    if (rewrite !== null) {
      if (rewrite.path !== undefined) rewrittenPath = modifyPath(rewrite.path, path, matchedPrefix);
      if (rewrite.hostname !== undefined) {
        const { port } = splitHost(request.authority);
        rewrittenHost = port === null ? rewrite.hostname : `${rewrite.hostname}:${port}`;
      }
    }
    for (const filter of backend.filters) {
      if (filter.requestHeaderModifier !== undefined)
        requestHeaders = [...requestHeaders, filter.requestHeaderModifier];
      if (filter.responseHeaderModifier !== undefined)
        responseHeaders = [...responseHeaders, filter.responseHeaderModifier];
    }
    return {
      kind: 'forward',
      target: backendTarget,
      pathAndQuery: queryText === '' ? rewrittenPath : `${rewrittenPath}?${queryText}`,
      authority: rewrittenHost,
      requestHeaders,
      responseHeaders,
      timeouts: timeoutsOf(rule, policy, delayedMs),
      retry: this.retryOf(target, rule.retry, policy),
      series: this.seriesOf(target, rule, backend),
      mirrors:
        rule.mirrors.length === 0 || request.headers[MIRRORED_HEADER] !== undefined
          ? NO_MIRRORS
          : this.mirrorsOf(rule),
      rule,
      backend,
    };
  }

  /**
   * A request to a Service port whose routes do not apply to it (none attached for its protocol)
   * but whose Service asks for retries or a timeout by annotation: sent on as it is, with them.
   */
  private policyOnly(
    target: Target,
    policy: ServiceTrafficPolicy,
    request: RoutedRequest,
  ): RouteDecision | null {
    const timeouts = timeoutsOf(null, policy);
    if (policy.retry === null && timeouts === null) return null;
    return {
      kind: 'forward',
      target,
      pathAndQuery: request.pathAndQuery,
      authority: null,
      requestHeaders: [],
      responseHeaders: [],
      timeouts,
      retry: this.retryOf(target, null, policy),
      series: null,
      mirrors: NO_MIRRORS,
      rule: null,
      backend: null,
    };
  }

  /** The rule's mirrors this request goes to (each drawn by its percent or fraction). */
  /** The policy of `route` in `table` (its routePolicies), cached per compiled route and table. */
  private routePolicyOf(table: PolicedRouteTable, route: RouteName): ServiceTrafficPolicy | null {
    const known = this.routePolicies.get(route);
    if (known !== undefined && known.table === table) return known.policy;
    const policy = table.routePolicies?.get(routePolicyKey(route)) ?? null;
    this.routePolicies.set(route, { table, policy });
    return policy;
  }

  private mirrorsOf(rule: CompiledRule): readonly Target[] {
    const targets: Target[] = [];
    for (const mirror of rule.mirrors) {
      const share =
        mirror.percent !== undefined
          ? mirror.percent / 100
          : mirror.fraction !== undefined
            ? mirror.fraction.numerator / mirror.fraction.denominator
            : 1;
      if (share < 1 && this.random.next() >= share) continue;
      const ref = mirror.backendRef;
      if (ref.port === undefined) continue; // a Service backend needs its port (the schema asks for it)
      targets.push({ host: `${ref.name}.${ref.namespace ?? rule.route.namespace}.svc`, port: ref.port });
    }
    return targets;
  }

  /** The route metrics of a rule's backend, made on its first request (and kept with it). */
  private seriesOf(target: Target, rule: CompiledRule, backend: CompiledBackend): RouteSeries | null {
    const metrics = this.opts.metrics;
    if (metrics === undefined || metrics === null) return null;
    let series = this.series.get(backend);
    if (series !== undefined) return series;
    const parent = serviceOf(target, this.opts.namespace);
    series =
      parent === null
        ? null
        : metrics.series({
            parentNamespace: parent.namespace,
            parentName: parent.name,
            parentPort: parent.port,
            routeKind: rule.route.kind,
            routeNamespace: rule.route.namespace,
            routeName: rule.route.name,
            backendNamespace: backend.namespace,
            backendName: backend.name,
            backendPort: backend.port,
          });
    this.series.set(backend, series);
    return series;
  }

  /**
   * The retry policy of a request: the rule's (HTTPRoute `retry`) when it has one, else the
   * annotations' (route over Service); with its Service port's budget, which this request pays into.
   */
  private retryOf(
    target: Target,
    retry: CompiledRule['retry'],
    policy: ServiceTrafficPolicy,
  ): RoutePolicyRetry | null {
    const entry = this.entryOf(target);
    if (entry === undefined) return null;
    const annotated = policy.retry;
    if (retry === null && annotated === null) return null;
    if (retry !== null && retry.codes.length === 0) return null;
    if (entry.budget === null) {
      // The budget protects the Service: its own annotations (or its XBackendTrafficPolicy) set it,
      // never a route's, which may be another namespace's consumer route retrying against it.
      const servicePolicy = entry.table?.policy ?? NO_TRAFFIC_POLICY;
      entry.budget = new RetryBudget(servicePolicy.budget);
      entry.budgetPolicy = servicePolicy.budget;
    }
    const budget = entry.budget;
    budget.deposit();
    if (retry !== null) {
      return {
        codes: retry.codes,
        grpcCodes: [],
        retries: retry.attempts ?? DEFAULT_RETRIES,
        backoffMs: retry.backoffMs ?? DEFAULT_BACKOFF_MS,
        budget,
      };
    }
    return {
      codes: annotated!.httpCodes,
      grpcCodes: annotated!.grpcCodes,
      retries: annotated!.retries,
      backoffMs: DEFAULT_BACKOFF_MS,
      budget,
    };
  }

  close(): void {
    this.closed = true;
    for (const entry of this.byService.values()) entry.watch?.close();
    this.byService.clear();
    this.watched.clear();
  }
}

/**
 * The Service port a logical target names: `NAME` (this proxy's namespace), `NAME.NS`, or
 * `NAME.NS.svc[.ZONE]`; null for other names (an external name is not a Service).
 */
export function serviceOf(target: Target, ownNamespace: string): ServicePort | null {
  const labels = canonicalName(target.host).split('.');
  const name = labels[0] ?? '';
  if (name === '') return null;
  if (labels.length === 1) return { namespace: ownNamespace, name, port: target.port };
  if (labels.length === 2 || labels[2] === 'svc') return { namespace: labels[1]!, name, port: target.port };
  return null;
}

/** The key of a Service port ("ns/name:port"). */
function servicePortKey(service: ServicePort): string {
  return `${service.namespace}/${service.name}:${service.port}`;
}

/** Whether a proxy error reason is one of the timeouts (route metrics count them apart). */
export function isTimeoutReason(reason: string | undefined): boolean {
  return (
    reason === 'request-timeout' || reason === 'backend-request-timeout' || reason === 'response-timeout'
  );
}

/** "HTTPRoute ns/name", for the messages of proxy-made answers (built only when one is made). */
function ruleName(rule: CompiledRule): string {
  return `${rule.route.kind} ${rule.route.namespace}/${rule.route.name}`;
}
