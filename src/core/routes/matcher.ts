// The route matcher: a set of routes attached to one Service port (select.ts) compiled once into
// an ordered list of candidates (one per rule match), so that matching a request is a scan in
// precedence order with no regular expression compiled and nothing allocated beyond a lazy parse
// of the query string when a candidate tests query parameters.
//
// HTTPRoute precedence (httproute_types.go, HTTPRouteRule.Matches), continuing on ties: an Exact
// path; then RegularExpression paths (implementation-specific: Trellis puts them after Exact,
// longer pattern first); then the PathPrefix with the most characters; a method match; the most
// header matches; the most query parameter matches; then the oldest route (creation time); the
// route first by "namespace/name"; the first rule in the route; the first match in the rule.
// GRPCRoute precedence (grpcroute_types.go): the most characters in a matching service, then in
// a matching method, then the most header matches; then the same route and rule order. Hostnames
// do not apply to mesh traffic and are ignored. gRPC requests use the GRPCRoutes when any is
// attached, else the HTTPRoutes; other requests only the HTTPRoutes (routes of the two kinds are
// never merged).
//
// Header names are compared case-insensitively (the first of equivalent names in a match counts),
// values exactly; a header sent several times is matched on its values joined with ",". Query
// parameter names and values are compared exactly after URL decoding, on the first value.
// Regular expressions match the whole value (regex.ts).
import { parseGatewayDuration } from './duration.ts';
import { compileBackends, type BackendSet, type CompiledBackend } from './backends.ts';
import { refersToFault, type CompiledFault } from './fault.ts';
import { normalizePrefix, underPrefix } from './path.ts';
import { compileFullMatch } from './regex.ts';
import type { Filter, HeaderModifier, Mirror, Redirect, Rewrite } from './schema-filters.ts';
import type { GrpcMatch, HttpMatch, RouteResource } from './schema.ts';

/** Node's header object (IncomingMessage.headers, HTTP/2 headers): lower-case names. */
export type RequestHeaders = Readonly<Record<string, string | readonly string[] | undefined>>;

export interface RouteRequest {
  readonly method: string;
  /** The path without the query. For gRPC: "/package.Service/Method". */
  readonly path: string;
  /** The query without "?", "" when none. */
  readonly query: string;
  readonly headers: RequestHeaders;
  /** True for gRPC requests (content-type application/grpc...). */
  readonly grpc: boolean;
}

/** The route a rule belongs to. */
export interface RouteName {
  readonly kind: 'HTTPRoute' | 'GRPCRoute';
  readonly namespace: string;
  readonly name: string;
  /** "NAMESPACE/NAME", made once per compiled route (tap events and spans name the route by it). */
  readonly label: string;
}

export interface CompiledRule {
  readonly route: RouteName;
  readonly ruleIndex: number;
  readonly ruleName: string | null;
  /** The rule's name, else its index in the route ("0", "1", ...): made once, for tap events and spans. */
  readonly ruleLabel: string;
  readonly requestHeaders: HeaderModifier | null;
  readonly responseHeaders: HeaderModifier | null;
  readonly redirect: Redirect | null;
  readonly rewrite: Rewrite | null;
  /** RequestMirror filters whose Service the control plane resolved (others are left out). */
  readonly mirrors: readonly Mirror[];
  readonly backends: BackendSet;
  /** Set when the rule cannot be served as written (an ExtensionRef Trellis does not implement): answer 500. */
  readonly failure: string | null;
  /** The HTTPFaults the rule's ExtensionRefs name (fault.ts), in order. */
  readonly faults: readonly CompiledFault[];
  /** Milliseconds; null when not set; 0 means no timeout. */
  readonly requestTimeoutMs: number | null;
  readonly backendRequestTimeoutMs: number | null;
  readonly retry: {
    readonly codes: readonly number[];
    readonly attempts: number | null;
    readonly backoffMs: number | null;
  } | null;
}

/** A matched rule, and the PathPrefix value that matched (for ReplacePrefixMatch). */
export interface RouteMatch {
  readonly rule: CompiledRule;
  readonly matchedPrefix: string | null;
}

/** Routes are attached but no rule matches: the proxy answers 404. */
export const NO_MATCHING_RULE = Symbol('no matching rule');

interface ValueTest {
  readonly name: string;
  readonly exact: string | null;
  readonly regex: RegExp | null;
}

interface Candidate {
  readonly pathKind: 0 | 1 | 2; // Exact, RegularExpression, PathPrefix
  readonly path: string; // exact value, or normalized prefix
  readonly pathRegex: RegExp | null;
  readonly method: string | null;
  readonly grpcService: ValueTest | null;
  readonly grpcMethod: ValueTest | null;
  readonly headers: readonly ValueTest[];
  readonly query: readonly ValueTest[];
  readonly result: RouteMatch;
}

export interface RouteTable {
  /** null: no HTTPRoute attached (requests go to the Service as without routes). */
  readonly http: readonly Candidate[] | null;
  readonly grpc: readonly Candidate[] | null;
}

export const EMPTY_ROUTE_TABLE: RouteTable = { http: null, grpc: null };

/** Whether a backend exists (the control plane knows; the proxy gets it with the routes). */
export type BackendResolver = (namespace: string, name: string, port: number) => boolean;

/** The HTTPFault `namespace/name`, or null when there is none (the control plane sends them with the routes). */
export type FaultResolver = (namespace: string, name: string) => CompiledFault | null;

const NO_FAULTS: FaultResolver = () => null;

/**
 * Compiles the routes that apply to one Service port for one client (select.ts routesFor).
 * Routes must have passed the schema (schema.ts); regular expressions are compiled here, once.
 */
export function compileRouteTable(
  routes: readonly RouteResource[],
  resolved: BackendResolver,
  faultOf: FaultResolver = NO_FAULTS,
): RouteTable {
  const ordered = [...routes].sort(
    (a, b) =>
      a.createdMs - b.createdMs || compareText(`${a.namespace}/${a.name}`, `${b.namespace}/${b.name}`),
  );
  const http: { c: Candidate; keys: number[] }[] = [];
  const grpc: { c: Candidate; keys: number[] }[] = [];
  ordered.forEach((route, routeOrder) => {
    const name: RouteName = {
      kind: route.kind,
      namespace: route.namespace,
      name: route.name,
      label: `${route.namespace}/${route.name}`,
    };
    route.spec.rules.forEach((rule, ruleIndex) => {
      const compiled = compileRule(name, ruleIndex, rule, route.namespace, resolved, faultOf);
      rule.matches.forEach((match, matchIndex) => {
        const order = [routeOrder, ruleIndex, matchIndex];
        if (route.kind === 'HTTPRoute') {
          const c = httpCandidate(match as HttpMatch, compiled);
          const lengthKey = c.pathKind === 1 ? -(match as HttpMatch).path.value.length : -c.path.length;
          http.push({
            c,
            keys: [
              c.pathKind,
              lengthKey,
              c.method === null ? 1 : 0,
              -c.headers.length,
              -c.query.length,
              ...order,
            ],
          });
        } else {
          const c = grpcCandidate(match as GrpcMatch, compiled);
          const m = (match as GrpcMatch).method;
          grpc.push({
            c,
            keys: [-(m?.service?.length ?? 0), -(m?.method?.length ?? 0), -c.headers.length, ...order],
          });
        }
      });
    });
  });
  const sorted = (list: { c: Candidate; keys: number[] }[]) =>
    list.sort((a, b) => compareKeys(a.keys, b.keys)).map((x) => x.c);
  const hasKind = (kind: string) => routes.some((r) => r.kind === kind);
  return {
    http: hasKind('HTTPRoute') ? sorted(http) : null,
    grpc: hasKind('GRPCRoute') ? sorted(grpc) : null,
  };
}

/**
 * The rule `request` matches: a RouteMatch; NO_MATCHING_RULE when routes are attached but none
 * matches (answer 404); null when no route applies (send to the Service as without routes).
 */
export function matchRoute(
  table: RouteTable,
  request: RouteRequest,
): RouteMatch | typeof NO_MATCHING_RULE | null {
  if (request.grpc && table.grpc !== null) return matchGrpc(table.grpc, request);
  if (table.http === null) return null;
  let params: URLSearchParams | null = null;
  for (const c of table.http) {
    if (c.method !== null && c.method !== request.method) continue;
    if (
      c.pathKind === 0
        ? request.path !== c.path
        : c.pathKind === 2
          ? !underPrefix(request.path, c.path)
          : !(c.pathRegex as RegExp).test(request.path)
    )
      continue;
    if (!headersMatch(c.headers, request.headers)) continue;
    if (c.query.length > 0) {
      params ??= new URLSearchParams(request.query);
      if (!queryMatches(c.query, params)) continue;
    }
    return c.result;
  }
  return NO_MATCHING_RULE;
}

function matchGrpc(
  candidates: readonly Candidate[],
  request: RouteRequest,
): RouteMatch | typeof NO_MATCHING_RULE {
  const slash = request.path.lastIndexOf('/');
  const service = slash > 0 ? request.path.slice(1, slash) : '';
  const method = slash > 0 ? request.path.slice(slash + 1) : '';
  for (const c of candidates) {
    if (c.grpcService !== null && !valueMatches(c.grpcService, service)) continue;
    if (c.grpcMethod !== null && !valueMatches(c.grpcMethod, method)) continue;
    if (!headersMatch(c.headers, request.headers)) continue;
    return c.result;
  }
  return NO_MATCHING_RULE;
}

function valueMatches(test: ValueTest, value: string): boolean {
  return test.exact !== null ? test.exact === value : (test.regex as RegExp).test(value);
}

function headersMatch(tests: readonly ValueTest[], headers: RequestHeaders): boolean {
  for (const test of tests) {
    const value = headers[test.name];
    if (value === undefined) return false;
    if (!valueMatches(test, typeof value === 'string' ? value : value.join(','))) return false;
  }
  return true;
}

function queryMatches(tests: readonly ValueTest[], params: URLSearchParams): boolean {
  for (const test of tests) {
    const value = params.get(test.name);
    if (value === null || !valueMatches(test, value)) return false;
  }
  return true;
}

function valueTests(
  list: readonly { type: string; name: string; value: string }[],
  lowerCase: boolean,
): ValueTest[] {
  const seen = new Set<string>();
  const tests: ValueTest[] = [];
  for (const item of list) {
    const name = lowerCase ? item.name.toLowerCase() : item.name;
    if (seen.has(name)) continue; // only the first of equivalent names counts
    seen.add(name);
    tests.push(valueTest(name, item.type, item.value, item));
  }
  return tests;
}

/**
 * The matcher of a pattern, kept with the validated object it came from (a path or header match):
 * a route set is compiled again on every change of any of its routes, and a route that did not
 * change keeps its validated objects (src/proxy/route/route-table.ts), so its patterns are not
 * compiled again, however many there are (compileFullMatch keeps only the last 256).
 */
const compiledPatterns = new WeakMap<object, RegExp>();

function patternOf(owner: object, value: string): RegExp {
  let regex = compiledPatterns.get(owner);
  if (regex === undefined) compiledPatterns.set(owner, (regex = compileFullMatch(value)));
  return regex;
}

/** `owner`: the object the pattern is the only one of (null: it holds more than one). */
function valueTest(name: string, type: string, value: string, owner: object | null): ValueTest {
  return type === 'RegularExpression'
    ? { name, exact: null, regex: owner === null ? compileFullMatch(value) : patternOf(owner, value) }
    : { name, exact: value, regex: null };
}

function httpCandidate(match: HttpMatch, rule: RouteMatch['rule']): Candidate {
  const { type, value } = match.path;
  const pathKind = type === 'Exact' ? 0 : type === 'RegularExpression' ? 1 : 2;
  return {
    pathKind,
    path: pathKind === 2 ? normalizePrefix(value) : value,
    pathRegex: pathKind === 1 ? patternOf(match.path, value) : null,
    method: match.method ?? null,
    grpcService: null,
    grpcMethod: null,
    headers: valueTests(match.headers, true),
    query: valueTests(match.queryParams, false),
    result: { rule, matchedPrefix: pathKind === 2 ? value : null },
  };
}

function grpcCandidate(match: GrpcMatch, rule: CompiledRule): Candidate {
  const m = match.method;
  const test = (value: string | undefined) =>
    m === undefined || !value ? null : valueTest('', m.type, value, null);
  return {
    pathKind: 2,
    path: '',
    pathRegex: null,
    method: null,
    grpcService: test(m?.service),
    grpcMethod: test(m?.method),
    headers: valueTests(match.headers, true),
    query: [],
    result: { rule, matchedPrefix: null },
  };
}

interface RuleLike {
  readonly name?: string | undefined;
  readonly filters: readonly Filter[];
  readonly backendRefs: readonly {
    readonly group: string;
    readonly kind: string;
    readonly name: string;
    readonly namespace?: string | undefined;
    readonly port?: number | undefined;
    readonly weight: number;
    readonly filters: readonly Filter[];
  }[];
  readonly timeouts?:
    { readonly request?: string | undefined; readonly backendRequest?: string | undefined } | undefined;
  readonly retry?:
    | {
        readonly codes: readonly number[];
        readonly attempts?: number | undefined;
        readonly backoff?: string | undefined;
      }
    | undefined;
}

function compileRule(
  route: RouteName,
  ruleIndex: number,
  rule: RuleLike,
  namespace: string,
  resolved: BackendResolver,
  faultOf: FaultResolver,
): CompiledRule {
  const first = <K extends keyof Filter>(key: K): NonNullable<Filter[K]> | null =>
    (rule.filters.find((f) => f[key] !== undefined)?.[key] ?? null) as NonNullable<Filter[K]> | null;
  const backends: CompiledBackend[] = rule.backendRefs.map((ref) => {
    const ns = ref.namespace ?? namespace;
    const port = ref.port ?? 0;
    const isService = ref.group === '' && ref.kind === 'Service';
    return {
      namespace: ns,
      name: ref.name,
      port,
      weight: ref.weight,
      // A backend-level ExtensionRef cannot be applied (none is implemented): its share gets 500.
      resolved:
        isService && resolved(ns, ref.name, port) && !ref.filters.some((f) => f.type === 'ExtensionRef'),
      filters: ref.filters,
    };
  });
  // Each ExtensionRef must name an HTTPFault of the route's namespace; the first that does not
  // makes the rule answer 500.
  const faults: CompiledFault[] = [];
  let extension: Filter['extensionRef'] = undefined;
  for (const filter of rule.filters) {
    const ref = filter.extensionRef;
    if (ref === undefined) continue;
    const fault = refersToFault(ref) ? faultOf(namespace, ref.name) : null;
    if (fault === null) {
      extension = ref;
      break;
    }
    faults.push(fault);
  }
  const ms = (text: string | undefined) => (text === undefined ? null : parseGatewayDuration(text));
  return {
    route,
    ruleIndex,
    ruleName: rule.name ?? null,
    ruleLabel: rule.name ?? String(ruleIndex),
    requestHeaders: first('requestHeaderModifier'),
    responseHeaders: first('responseHeaderModifier'),
    redirect: first('requestRedirect'),
    rewrite: first('urlRewrite'),
    // A mirror goes only to a Service the control plane resolved, as a backend does: never to
    // another namespace's Service (RefNotPermitted), which would make every client of the route
    // send copies there under its own identity.
    mirrors: rule.filters.flatMap((f) => {
      const mirror = f.requestMirror;
      if (mirror === undefined) return [];
      const ref = mirror.backendRef;
      const isService = ref.group === '' && ref.kind === 'Service';
      return isService && resolved(ref.namespace ?? namespace, ref.name, ref.port ?? 0) ? [mirror] : [];
    }),
    backends: compileBackends(backends),
    failure:
      extension === undefined
        ? null
        : refersToFault(extension)
          ? `ExtensionRef ${extension.group}/${extension.kind} ${extension.name}: no such HTTPFault in namespace ${namespace}`
          : `ExtensionRef ${extension.group}/${extension.kind} ${extension.name} is not implemented`,
    faults,
    requestTimeoutMs: ms(rule.timeouts?.request),
    backendRequestTimeoutMs: ms(rule.timeouts?.backendRequest),
    retry:
      rule.retry === undefined
        ? null
        : {
            codes: rule.retry.codes,
            attempts: rule.retry.attempts ?? null,
            backoffMs: ms(rule.retry.backoff),
          },
  };
}

function compareKeys(a: readonly number[], b: readonly number[]): number {
  for (let i = 0; i < a.length; i++) {
    const d = (a[i] as number) - (b[i] as number);
    if (d !== 0) return d;
  }
  return 0;
}

function compareText(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
