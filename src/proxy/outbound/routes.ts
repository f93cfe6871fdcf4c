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
// answer comes in time, requests go on as without routes until a table arrives. Watches are bounded (MAX_WATCHED): past that, further Service
// ports are served without routes, and a warning says so once.
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
  type RouteTable,
} from '../../core/routes/matcher.ts';
import type { HeaderModifier } from '../../core/routes/schema-filters.ts';
import { targetKey, type Target } from '../../core/target.ts';
import { canonicalName } from '../resolve/mesh-names.ts';
import type { RouteWatch, RouteWatchOptions } from '../route/watch-client.ts';
import { RetryBudget } from './retry-budget.ts';
import { hasDotSegment, resolveDotSegments } from '../policy/match.ts';

/** At most this many Service ports are watched for routes by one proxy. */
export const MAX_WATCHED = 1000;

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
 * A route's timeout and the reason its 504 names: timeouts.request bounds the whole exchange,
 * timeouts.backendRequest each attempt; with one attempt per request (no retries yet) the
 * smaller of the two is the one that fires.
 */
export interface RouteTimeout {
  readonly ms: number;
  readonly reason: 'request-timeout' | 'backend-request-timeout';
}

/** A rule's retries (Gateway API HTTPRouteRetry) and the Service port's budget they draw on. */
export interface RoutePolicyRetry {
  /** Response statuses that are retried. */
  readonly codes: readonly number[];
  /** Retries after the first attempt. */
  readonly retries: number;
  /** The first backoff; each next one doubles, each drawn in [d/2, d] (jitter). */
  readonly backoffMs: number;
  readonly budget: RetryBudget;
}

/** Retries when `attempts` is not given (the spec leaves the default to implementations). */
export const DEFAULT_RETRIES = 1;
/** The first backoff when `backoff` is not given (Envoy's base interval). */
export const DEFAULT_BACKOFF_MS = 25;

function routeTimeout(rule: CompiledRule, delayedMs = 0): RouteTimeout | null {
  const request =
    rule.requestTimeoutMs === 0 || rule.requestTimeoutMs === null ? null : rule.requestTimeoutMs - delayedMs;
  const backend = rule.backendRequestTimeoutMs === 0 ? null : rule.backendRequestTimeoutMs;
  if (backend !== null && (request === null || backend < request))
    return { ms: backend, reason: 'backend-request-timeout' };
  return request === null ? null : { ms: request, reason: 'request-timeout' };
}

/** Where the route level sends a request. */
export type RouteDecision =
  | { readonly kind: 'refuse'; readonly reason: RouteRefusal | 'request-timeout'; readonly message: string }
  /** An HTTPFault's abort: answer `status` (a gRPC request: `grpcStatus`) with reason fault-injected. */
  | {
      readonly kind: 'abort';
      readonly status: number;
      readonly grpcStatus: number;
      readonly message: string;
    }
  /** An HTTPFault's delay: wait `ms` (clearing the timer if the client goes away), then apply `then`. */
  | { readonly kind: 'delay'; readonly ms: number; readonly then: RouteDecision }
  | { readonly kind: 'redirect'; readonly status: number; readonly location: string }
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
      /** The route's limit on waiting for the response, null: the proxy's response timeout. */
      readonly timeout: RouteTimeout | null;
      /** The rule's retry policy (HTTPRoute `retry`), null: no retries. */
      readonly retry: RoutePolicyRetry | null;
      readonly rule: CompiledRule;
      readonly backend: CompiledBackend;
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
  /** Default: the real watch client, loaded on first use (it brings gRPC). */
  readonly startWatch?: StartRouteWatch;
  /** Told of each fault injected (for trellis_route_faults_total). */
  readonly onFault?: (kind: 'abort' | 'delay') => void;
}

interface Watched {
  table: RouteTable | null;
  /** The retry budget of this Service port, made when a rule first asks for retries. */
  budget: RetryBudget | null;
  /** Until the first table arrives (or the wait ends): the requests waiting for it. */
  first: Promise<RouteTable | null> | null;
  watch: RouteWatch | null;
}

export class OutboundRoutes {
  private readonly opts: OutboundRoutesOptions;
  private readonly random: Random;
  private readonly watched = new Map<string, Watched>();
  private warnedFull = false;
  private closed = false;

  constructor(opts: OutboundRoutesOptions) {
    this.opts = opts;
    this.random = opts.random ?? unseededRandom();
  }

  /**
   * The routes attached to the Service port `target` names: the table (null when none are), at
   * once when known, else a promise of it (the first request to that Service port).
   */
  tableFor(target: Target): RouteTable | null | Promise<RouteTable | null> {
    const key = targetKey(target);
    const known = this.watched.get(key);
    if (known !== undefined) return known.first ?? known.table;
    const service = serviceOf(target, this.opts.namespace);
    if (service === null || this.closed) return null;
    if (this.watched.size >= MAX_WATCHED) {
      if (!this.warnedFull) {
        this.warnedFull = true;
        this.opts.log.warn('too many services to watch routes for; further ones are served without routes', {
          max: MAX_WATCHED,
        });
      }
      return null;
    }
    const entry: Watched = { table: null, budget: null, first: null, watch: null };
    entry.first = this.startWatch(entry, service);
    this.watched.set(key, entry);
    return entry.first;
  }

  private async startWatch(entry: Watched, service: ServicePort): Promise<RouteTable | null> {
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
          entry.table = table.http === null && table.grpc === null ? null : table;
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
  decide(target: Target, table: RouteTable, request: RoutedRequest): RouteDecision | null {
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
    if (matched === null) return null;
    if (matched === NO_MATCHING_RULE) {
      return {
        kind: 'refuse',
        reason: 'route-not-found',
        message: `no route rule matches ${request.method} ${path}`,
      };
    }
    const { rule, matchedPrefix } = matched;
    const name = `${rule.route.kind} ${rule.route.namespace}/${rule.route.name}`;
    if (rule.failure !== null)
      return { kind: 'refuse', reason: 'route-unsupported', message: `${name}: ${rule.failure}` };
    return rule.faults.length === 0
      ? this.decideRule(target, request, matched.rule, matchedPrefix, path, queryText, 0)
      : this.withFaults(target, request, rule, matchedPrefix, path, queryText, name);
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
    name: string,
  ): RouteDecision {
    let delayMs = 0;
    let abort: CompiledFault | null = null;
    for (const fault of rule.faults) {
      if (fault.delayChance > 0 && unitDraw(this.random) < fault.delayChance) delayMs += fault.delayMs;
      if (abort === null && fault.abortChance > 0 && unitDraw(this.random) < fault.abortChance) abort = fault;
    }
    if (delayMs === 0 && abort === null)
      return this.decideRule(target, request, rule, matchedPrefix, path, queryText, 0);
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
          message: `${name}: timeouts.request (${limit} ms) passed during an injected delay`,
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
        message: `${name}: HTTPFault ${abort.name} aborted the request`,
      };
    } else then = this.decideRule(target, request, rule, matchedPrefix, path, queryText, delayMs);
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
  ): RouteDecision {
    const name = `${rule.route.kind} ${rule.route.namespace}/${rule.route.name}`;
    const authority = splitHost(request.authority);
    if (rule.redirect !== null) {
      const r = redirectResponse(
        rule.redirect,
        { scheme: 'http', host: authority.host, port: authority.port ?? 80, path, query: queryText },
        matchedPrefix,
      );
      return { kind: 'redirect', status: r.status, location: r.location };
    }
    const backend = pickBackend(rule.backends, this.random);
    if (backend === null || !backend.resolved) {
      const which =
        backend === null
          ? 'no backend with weight'
          : `backend ${backend.namespace}/${backend.name}:${backend.port} does not exist`;
      return { kind: 'refuse', reason: 'backend-not-found', message: `${name}: ${which}` };
    }
    const requestHeaders: HeaderModifier[] = [];
    const responseHeaders: HeaderModifier[] = [];
    if (rule.requestHeaders !== null) requestHeaders.push(rule.requestHeaders);
    if (rule.responseHeaders !== null) responseHeaders.push(rule.responseHeaders);
    let rewrittenPath = path;
    let rewrittenHost: string | null = null;
    const rewrite = rule.rewrite;
    if (rewrite !== null) {
      if (rewrite.path !== undefined) rewrittenPath = modifyPath(rewrite.path, path, matchedPrefix);
      if (rewrite.hostname !== undefined) {
        rewrittenHost = authority.port === null ? rewrite.hostname : `${rewrite.hostname}:${authority.port}`;
      }
    }
    for (const filter of backend.filters) {
      if (filter.requestHeaderModifier !== undefined) requestHeaders.push(filter.requestHeaderModifier);
      if (filter.responseHeaderModifier !== undefined) responseHeaders.push(filter.responseHeaderModifier);
    }
    return {
      kind: 'forward',
      target: { host: `${backend.name}.${backend.namespace}.svc`, port: backend.port },
      pathAndQuery: queryText === '' ? rewrittenPath : `${rewrittenPath}?${queryText}`,
      authority: rewrittenHost,
      requestHeaders,
      responseHeaders,
      timeout: routeTimeout(rule, delayedMs),
      retry: rule.retry === null ? null : this.retryOf(target, rule.retry),
      rule,
      backend,
    };
  }

  /** A rule's retry policy with its Service port's budget, which this request pays into. */
  private retryOf(target: Target, retry: NonNullable<CompiledRule['retry']>): RoutePolicyRetry | null {
    const entry = this.watched.get(targetKey(target));
    if (entry === undefined || retry.codes.length === 0) return null;
    const budget = (entry.budget ??= new RetryBudget());
    budget.deposit();
    return {
      codes: retry.codes,
      retries: retry.attempts ?? DEFAULT_RETRIES,
      backoffMs: retry.backoffMs ?? DEFAULT_BACKOFF_MS,
      budget,
    };
  }

  close(): void {
    this.closed = true;
    for (const entry of this.watched.values()) entry.watch?.close();
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
