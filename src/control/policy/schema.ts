// valibot schemas of the two policy kinds (apiVersion policy.trellis.dev/v1alpha1), used by
// src/control/resources.ts for `trellis apply -f` and the state folder, and by the Kubernetes
// source for CRD objects, so both places accept and reject exactly the same documents:
//
//   kind: Server
//   metadata: { name: web-http, namespace: shop }
//   spec:
//     workload: web                 # or podSelector: { matchLabels: { app: web } } (exactly one)
//     port: 8080                    # or a port name of the workload (http)
//     protocol: http1               # detect (default) | http1 | http2 | grpc | opaque
//
//   kind: AuthorizationPolicy
//   metadata: { name: web-from-shop, namespace: shop }
//   spec:
//     server: web-http              # a Server of the same namespace
//     from:                         # at least one of:
//       identities: ["spiffe://cluster.local/ns/shop/sa/*"]   # "*" within a segment; "*" alone: any authenticated
//       namespaces: [shop]          # authenticated clients of these namespaces
//       networks: [198.18.0.0/15]   # client addresses (unauthenticated too)
//       unauthenticated: true       # anyone
//     routes:                       # optional: only these HTTP requests (else the whole server)
//       - path: /api/*              # exact, or a prefix ending in "*"
//         methods: [GET, POST]      # optional; upper-cased
//
//   kind: HTTPLocalRateLimitPolicy   # after linkerd's: 429 over a limit (rate-limit.ts on the proxy)
//   metadata: { name: web-limits, namespace: shop }
//   spec:
//     targetRef: { group: policy.trellis.dev, kind: Server, name: web-http }   # same namespace
//     total: { requestsPerSecond: 100 }      # all clients together (optional)
//     identity: { requestsPerSecond: 20 }    # each client identity (optional; <= total)
//     overrides:                             # optional, at most 16; each <= total
//       - requestsPerSecond: 50              # shared by the identities listed
//         identities: ["spiffe://cluster.local/ns/shop/sa/batch"]   # exact SPIFFE IDs, at most 64
//
// Errors name the field path, and for patterns and CIDRs say what is wrong with the value.
import * as v from 'valibot';
import { dnsLabel, objectIssue, port, serverProtocol, stringMap } from '../../core/schema.ts';
import { identityPatternProblem, parseCidr, routePathProblem } from '../../core/policy-syntax.ts';

export const POLICY_API_VERSION = 'policy.trellis.dev/v1alpha1';

export { objectIssue, stringMap };

export const metadataSchema = v.strictObject(
  {
    name: dnsLabel,
    namespace: v.optional(dnsLabel, 'default'),
    labels: v.optional(stringMap),
    annotations: v.optional(stringMap),
  },
  objectIssue,
);

/** Pod names and workload names: a DNS subdomain (lower-case, digits, "-" and "."). */
const workloadName = v.pipe(
  v.string('expected a string'),
  v.regex(/^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/, 'expected a workload name (a-z, 0-9, -, .)'),
);

export const serverSchema = v.strictObject(
  {
    apiVersion: v.literal(POLICY_API_VERSION, `expected ${POLICY_API_VERSION}`),
    kind: v.literal('Server', 'expected Server'),
    metadata: metadataSchema,
    spec: v.pipe(
      v.strictObject(
        {
          workload: v.optional(workloadName),
          podSelector: v.optional(v.strictObject({ matchLabels: v.optional(stringMap, {}) }, objectIssue)),
          port: v.union([port, dnsLabel], 'expected a port number 1..65535 or a port name'),
          protocol: v.optional(serverProtocol, 'detect'),
        },
        objectIssue,
      ),
      v.check(
        (spec) => (spec.workload === undefined) !== (spec.podSelector === undefined),
        'needs exactly one of workload and podSelector',
      ),
    ),
  },
  objectIssue,
);

const identityPattern = v.pipe(
  v.string('expected a string'),
  v.check(
    (pattern) => identityPatternProblem(pattern) === null,
    (issue) =>
      `${identityPatternProblem(issue.input as string) ?? 'invalid'}, got ${JSON.stringify(issue.input)}`,
  ),
);

const cidr = v.pipe(
  v.string('expected a string'),
  v.check(
    (text) => parseCidr(text) !== null,
    (issue) => `expected a CIDR such as 10.0.0.0/8 or ::1/128, got ${JSON.stringify(issue.input)}`,
  ),
);

const routePath = v.pipe(
  v.string('expected a string'),
  v.check(
    (path) => routePathProblem(path) === null,
    (issue) => `${routePathProblem(issue.input as string) ?? 'invalid'}, got ${JSON.stringify(issue.input)}`,
  ),
);

const method = v.pipe(
  v.string('expected a string'),
  v.regex(/^[A-Za-z]+$/, 'expected an HTTP method such as GET'),
  v.toUpperCase(),
);

const list = <T extends v.GenericSchema>(item: T) => v.optional(v.array(item, 'expected a list'), []);

export const authorizationPolicySchema = v.strictObject(
  {
    apiVersion: v.literal(POLICY_API_VERSION, `expected ${POLICY_API_VERSION}`),
    kind: v.literal('AuthorizationPolicy', 'expected AuthorizationPolicy'),
    metadata: metadataSchema,
    spec: v.strictObject(
      {
        server: dnsLabel,
        from: v.pipe(
          v.strictObject(
            {
              identities: list(identityPattern),
              namespaces: list(dnsLabel),
              networks: list(cidr),
              unauthenticated: v.optional(v.boolean('expected true or false'), false),
            },
            objectIssue,
          ),
          v.check(
            (from) =>
              from.unauthenticated ||
              from.identities.length + from.namespaces.length + from.networks.length > 0,
            'names nobody: give identities, namespaces, networks or unauthenticated: true',
          ),
        ),
        routes: list(v.strictObject({ path: routePath, methods: list(method) }, objectIssue)),
      },
      objectIssue,
    ),
  },
  objectIssue,
);

const requestsPerSecond = v.pipe(
  v.number('expected a number of requests per second 1..1000000'),
  v.integer('expected a number of requests per second 1..1000000'),
  v.minValue(1, 'expected a number of requests per second 1..1000000'),
  v.maxValue(1_000_000, 'expected a number of requests per second 1..1000000'),
);

const limit = v.strictObject({ requestsPerSecond }, objectIssue);

const spiffeId = v.pipe(
  v.string('expected a string'),
  v.regex(
    /^spiffe:\/\/[^/*\s]+(\/[^/*\s]+)+$/,
    'expected a SPIFFE ID such as spiffe://cluster.local/ns/shop/sa/web',
  ),
  v.maxLength(2048, 'at most 2048 characters'),
);

export const rateLimitPolicySchema = v.strictObject(
  {
    apiVersion: v.literal(POLICY_API_VERSION, `expected ${POLICY_API_VERSION}`),
    kind: v.literal('HTTPLocalRateLimitPolicy', 'expected HTTPLocalRateLimitPolicy'),
    metadata: metadataSchema,
    spec: v.pipe(
      v.strictObject(
        {
          targetRef: v.strictObject(
            {
              group: v.literal('policy.trellis.dev', 'expected policy.trellis.dev'),
              kind: v.literal('Server', 'expected Server (only a Server can be targeted)'),
              name: dnsLabel,
            },
            objectIssue,
          ),
          total: v.optional(limit),
          identity: v.optional(limit),
          overrides: v.optional(
            v.pipe(
              v.array(
                v.strictObject(
                  {
                    requestsPerSecond,
                    identities: v.pipe(
                      v.array(spiffeId, 'expected a list'),
                      v.minLength(1, 'needs at least one identity'),
                      v.maxLength(64, 'at most 64 items'),
                    ),
                  },
                  objectIssue,
                ),
                'expected a list',
              ),
              v.maxLength(16, 'at most 16 items'),
              v.check((list) => {
                const ids = list.flatMap((o) => o.identities);
                return new Set(ids).size === ids.length;
              }, 'an identity is listed in two overrides (or twice)'),
            ),
            [],
          ),
        },
        objectIssue,
      ),
      v.check(
        (spec) => spec.total !== undefined || spec.identity !== undefined || spec.overrides.length > 0,
        'limits nothing: give total, identity or overrides',
      ),
      v.check(
        (spec) =>
          spec.total === undefined ||
          [spec.identity?.requestsPerSecond ?? 0, ...spec.overrides.map((o) => o.requestsPerSecond)].every(
            (rps) => rps <= spec.total!.requestsPerSecond,
          ),
        'identity and override limits must be at most total.requestsPerSecond',
      ),
    ),
  },
  objectIssue,
);
