// valibot schemas of the two Gateway API route kinds Trellis serves to its mesh ("GAMMA"):
// HTTPRoute and GRPCRoute of apiVersion gateway.networking.k8s.io/v1, with the limits and the
// cross-field rules of their CRDs (apis/v1/httproute_types.go, grpcroute_types.go): 16 rules,
// 64 matches per rule and 128 in a route, 16 headers and query parameters per match, 16 filters,
// 16 backendRefs, 32 parentRefs; path values in the CRD's characters; ReplacePrefixMatch only
// with exactly one PathPrefix match; RequestRedirect never with backendRefs; backendRequest
// timeout at most the request timeout; retry codes 400..599. Defaults are filled in as the CRD's
// are (a match without a path is PathPrefix "/", a weight is 1, a redirect is 302).
//
// Used by `trellis apply` (src/control/resources.ts) and the state folder, and by the proxy to
// check what the control plane sends (src/proxy/route/watch-client.ts), so both accept exactly
// the same routes. SessionPersistence, CORS and ExternalAuth are refused as unsupported.
import * as v from 'valibot';
import {
  backendObjectRefEntries,
  duration,
  GATEWAY_API_VERSION,
  headerName,
  headerValue,
  hostname,
  listOf,
  metadataSchema,
  needsServicePort,
  objectIssue,
  parentRefsSchema,
  routeRegex,
  sectionName,
  uniqueNames,
  uniqueRuleNames,
} from './schema-common.ts';
import { grpcFiltersSchema, httpFiltersSchema, type Filter } from './schema-filters.ts';
import { parseGatewayDuration } from './duration.ts';

export { GATEWAY_API_VERSION };

const PATH_CHARACTERS = /^(?:[-A-Za-z0-9/._~!$&'()*+,;=:@]|[%][0-9a-fA-F]{2})+$/;

/** Why an Exact or PathPrefix value is not a valid path, or null (the CRD's rules, in its order). */
export function literalPathProblem(value: string): string | null {
  if (!value.startsWith('/')) return 'must be an absolute path starting with "/"';
  for (const bad of ['//', '/./', '/../', '%2f', '%2F', '#'])
    if (value.includes(bad)) return `must not contain ${JSON.stringify(bad)}`;
  if (value.endsWith('/..') || value.endsWith('/.')) return 'must not end with "/." or "/.."';
  if (!PATH_CHARACTERS.test(value)) return 'holds a character a path cannot hold (use %XX escapes)';
  return null;
}

const pathMatchSchema = v.pipe(
  v.strictObject(
    {
      type: v.optional(
        v.picklist(
          ['Exact', 'PathPrefix', 'RegularExpression'],
          'expected Exact, PathPrefix or RegularExpression',
        ),
        'PathPrefix',
      ),
      value: v.optional(
        v.pipe(v.string('expected a string'), v.maxLength(1024, 'at most 1024 characters')),
        '/',
      ),
    },
    objectIssue,
  ),
  v.rawCheck(({ dataset, addIssue }) => {
    if (!dataset.typed) return;
    const { type, value } = dataset.value;
    const problem = type === 'RegularExpression' ? regexProblemOf(value) : literalPathProblem(value);
    if (problem !== null)
      addIssue({
        message: problem,
        path: [{ type: 'object', origin: 'value', input: dataset.value, key: 'value', value }],
      });
  }),
);

function regexProblemOf(value: string): string | null {
  const result = v.safeParse(routeRegex(1024), value);
  return result.success ? null : (result.issues[0]?.message ?? 'invalid');
}

const valueMatch = (types: readonly ['Exact', 'RegularExpression'], maxValue: number) =>
  v.pipe(
    v.strictObject(
      {
        type: v.optional(v.picklist(types, 'expected Exact or RegularExpression'), 'Exact'),
        name: headerName,
        value: v.pipe(
          v.string('expected a string'),
          v.minLength(1, 'expected a non-empty value'),
          v.maxLength(maxValue, `at most ${maxValue} characters`),
        ),
      },
      objectIssue,
    ),
    v.rawCheck(({ dataset, addIssue }) => {
      if (!dataset.typed || dataset.value.type !== 'RegularExpression') return;
      const problem = regexProblemOf(dataset.value.value);
      if (problem !== null)
        addIssue({
          message: problem,
          path: [
            {
              type: 'object',
              origin: 'value',
              input: dataset.value,
              key: 'value',
              value: dataset.value.value,
            },
          ],
        });
    }),
  );

const MATCH_TYPES = ['Exact', 'RegularExpression'] as const;
const headerMatches = v.optional(
  v.pipe(
    listOf(valueMatch(MATCH_TYPES, 4096), 16),
    v.check((x) => uniqueNames(x), 'a header is named twice'),
  ),
  [],
);

export const HTTP_METHODS = [
  'GET',
  'HEAD',
  'POST',
  'PUT',
  'DELETE',
  'CONNECT',
  'OPTIONS',
  'TRACE',
  'PATCH',
] as const;

const httpMatchSchema = v.strictObject(
  {
    path: v.optional(pathMatchSchema, { type: 'PathPrefix', value: '/' }),
    headers: headerMatches,
    queryParams: v.optional(
      v.pipe(
        listOf(valueMatch(MATCH_TYPES, 1024), 16),
        v.check((x) => uniqueNames(x), 'a query parameter is named twice'),
      ),
      [],
    ),
    method: v.optional(v.picklist(HTTP_METHODS, `expected one of ${HTTP_METHODS.join(', ')}`)),
  },
  objectIssue,
);
export type HttpMatch = v.InferOutput<typeof httpMatchSchema>;

/**
 * A rule's matches, at most 64; absent or empty means the default match (every request: the
 * CRD's default, and the spec's "if no matches are specified").
 */
function defaultMatches<T extends v.GenericSchema>(match: T, fallback: v.InferOutput<T>) {
  return v.optional(
    v.pipe(
      listOf(match, 64),
      v.transform((list): v.InferOutput<T>[] => (list.length === 0 ? [fallback] : list)),
    ),
    [],
  );
}

const weight = v.optional(
  v.pipe(
    v.number('expected a weight 0..1000000'),
    v.integer('expected a weight 0..1000000'),
    v.minValue(0, 'expected a weight 0..1000000'),
    v.maxValue(1_000_000, 'expected a weight 0..1000000'),
  ),
  1,
);

const backendRefSchema = (filters: typeof httpFiltersSchema) =>
  v.pipe(
    v.strictObject({ ...backendObjectRefEntries, weight, filters: v.optional(filters, []) }, objectIssue),
    v.check((x) => needsServicePort(x), 'port: required for a Service reference'),
  );

const timeoutsSchema = v.pipe(
  v.strictObject({ request: v.optional(duration), backendRequest: v.optional(duration) }, objectIssue),
  v.check((t) => {
    if (t.request === undefined || t.backendRequest === undefined) return true;
    const request = parseGatewayDuration(t.request) ?? 0;
    return request === 0 || (parseGatewayDuration(t.backendRequest) ?? 0) <= request;
  }, 'backendRequest timeout cannot be longer than request timeout'),
);

const retrySchema = v.strictObject(
  {
    codes: v.optional(
      v.pipe(
        v.array(
          v.pipe(
            v.number('expected a status code 400..599'),
            v.integer('expected a status code 400..599'),
            v.minValue(400, 'expected a status code 400..599'),
            v.maxValue(599, 'expected a status code 400..599'),
          ),
          'expected a list',
        ),
        v.check((codes) => new Set(codes).size === codes.length, 'a code is listed twice'),
      ),
      [],
    ),
    attempts: v.optional(
      v.pipe(
        v.number('expected a number'),
        v.integer('expected an integer'),
        v.minValue(1, 'expected at least 1'),
      ),
    ),
    backoff: v.optional(duration),
  },
  objectIssue,
);

const unsupported = (what: string) =>
  v.optional(v.custom<never>(() => false, `${what} is not supported by Trellis`));

/** True when a ReplacePrefixMatch in `filters` comes with anything but exactly one PathPrefix match. */
function prefixReplaceWithoutPrefixMatch(filters: readonly Filter[], matches: readonly HttpMatch[]): boolean {
  const replaces = filters.some(
    (f) => (f.requestRedirect?.path ?? f.urlRewrite?.path)?.type === 'ReplacePrefixMatch',
  );
  return replaces && !(matches.length === 1 && matches[0]?.path.type === 'PathPrefix');
}

const httpRuleSchema = v.pipe(
  v.strictObject(
    {
      name: v.optional(sectionName),
      matches: defaultMatches(httpMatchSchema, {
        path: { type: 'PathPrefix', value: '/' },
        headers: [],
        queryParams: [],
      }),
      filters: v.optional(httpFiltersSchema, []),
      backendRefs: v.optional(listOf(backendRefSchema(httpFiltersSchema), 16), []),
      timeouts: v.optional(timeoutsSchema),
      retry: v.optional(retrySchema),
      sessionPersistence: unsupported('sessionPersistence'),
    },
    objectIssue,
  ),
  v.check(
    (rule) => rule.backendRefs.length === 0 || !rule.filters.some((f) => f.type === 'RequestRedirect'),
    'RequestRedirect filter must not be used together with backendRefs',
  ),
  v.check(
    (rule) =>
      !prefixReplaceWithoutPrefixMatch(rule.filters, rule.matches) &&
      !rule.backendRefs.some((b) => prefixReplaceWithoutPrefixMatch(b.filters, rule.matches)),
    'a path.replacePrefixMatch needs exactly one match, of type PathPrefix',
  ),
);
export type HttpRule = v.InferOutput<typeof httpRuleSchema>;

const routeRules = <
  T extends v.GenericSchema<unknown, { name?: string | undefined; matches: readonly unknown[] }>,
>(
  rule: T,
) =>
  v.optional(
    v.pipe(
      listOf(rule, 16),
      v.check((x) => uniqueRuleNames(x), 'rule names must be unique within the route'),
      v.check(
        (rules) => rules.reduce((sum, r) => sum + r.matches.length, 0) <= 128,
        'at most 128 matches across all rules of a route',
      ),
    ),
    [],
  );

const specEntries = {
  parentRefs: v.optional(parentRefsSchema, []),
  hostnames: v.optional(listOf(hostname, 16), []),
};

export const httpRouteSchema = v.strictObject(
  {
    apiVersion: v.literal(GATEWAY_API_VERSION, `expected ${GATEWAY_API_VERSION}`),
    kind: v.literal('HTTPRoute', 'expected HTTPRoute'),
    metadata: metadataSchema,
    spec: v.strictObject({ ...specEntries, rules: routeRules(httpRuleSchema) }, objectIssue),
  },
  objectIssue,
);
export type HttpRouteSpec = v.InferOutput<typeof httpRouteSchema>['spec'];

const grpcMethodSchema = v.pipe(
  v.strictObject(
    {
      type: v.optional(
        v.picklist(['Exact', 'RegularExpression'], 'expected Exact or RegularExpression'),
        'Exact',
      ),
      service: v.optional(
        v.pipe(v.string('expected a string'), v.maxLength(1024, 'at most 1024 characters')),
      ),
      method: v.optional(v.pipe(v.string('expected a string'), v.maxLength(1024, 'at most 1024 characters'))),
    },
    objectIssue,
  ),
  v.check((m) => Boolean(m.service) || Boolean(m.method), 'give service or method (or both)'),
  v.rawCheck(({ dataset, addIssue }) => {
    if (!dataset.typed) return;
    const m = dataset.value;
    for (const key of ['service', 'method'] as const) {
      const value = m[key];
      if (value === undefined || value === '') continue;
      const problem =
        m.type === 'RegularExpression'
          ? regexProblemOf(value)
          : (key === 'service'
                ? /^\.?[a-z_][a-z_0-9]*(\.[a-z_][a-z_0-9]*)*$/i
                : /^[A-Za-z_][A-Za-z_0-9]*$/
              ).test(value)
            ? null
            : `expected a gRPC ${key} name`;
      if (problem !== null)
        addIssue({ message: problem, path: [{ type: 'object', origin: 'value', input: m, key, value }] });
    }
  }),
);

const grpcMatchSchema = v.strictObject(
  { method: v.optional(grpcMethodSchema), headers: headerMatches },
  objectIssue,
);
export type GrpcMatch = v.InferOutput<typeof grpcMatchSchema>;

const grpcRuleSchema = v.strictObject(
  {
    name: v.optional(sectionName),
    matches: defaultMatches(grpcMatchSchema, { headers: [] }),
    filters: v.optional(grpcFiltersSchema, []),
    backendRefs: v.optional(listOf(backendRefSchema(grpcFiltersSchema), 16), []),
    sessionPersistence: unsupported('sessionPersistence'),
  },
  objectIssue,
);
export type GrpcRule = v.InferOutput<typeof grpcRuleSchema>;

export const grpcRouteSchema = v.strictObject(
  {
    apiVersion: v.literal(GATEWAY_API_VERSION, `expected ${GATEWAY_API_VERSION}`),
    kind: v.literal('GRPCRoute', 'expected GRPCRoute'),
    metadata: metadataSchema,
    spec: v.strictObject({ ...specEntries, rules: routeRules(grpcRuleSchema) }, objectIssue),
  },
  objectIssue,
);
export type GrpcRouteSpec = v.InferOutput<typeof grpcRouteSchema>['spec'];

export type BackendRef = HttpRule['backendRefs'][number];
export type ParentRef = HttpRouteSpec['parentRefs'][number];
export type { Filter };

/** A validated route: its kind, identity, creation time (ms since the epoch) and spec. */
export type RouteResource =
  | {
      readonly kind: 'HTTPRoute';
      readonly namespace: string;
      readonly name: string;
      readonly createdMs: number;
      /** Its Trellis traffic annotations (service-annotations.ts), when it has any. */
      readonly annotations?: Readonly<Record<string, string>>;
      readonly spec: HttpRouteSpec;
    }
  | {
      readonly kind: 'GRPCRoute';
      readonly namespace: string;
      readonly name: string;
      readonly createdMs: number;
      readonly annotations?: Readonly<Record<string, string>>;
      readonly spec: GrpcRouteSpec;
    };

/** The header value matches of a list, unused here; re-exported for the matcher. */
export { headerValue };
