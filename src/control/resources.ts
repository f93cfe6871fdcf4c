// The resource kinds `trellis apply -f` accepts: multi-document YAML, each document a
// Kubernetes-shaped object validated with valibot, then translated into the state folder's own
// formats (local-state.ts; policy kinds: src/control/policy/state-files.ts). Three kinds: a Service,
//
//   apiVersion: v1
//   kind: Service
//   metadata: { name: web, namespace: shop }      # namespace: default "default"
//   spec:
//     ports:
//       - name: http            # optional
//         port: 80              # the port clients connect to
//         targetPort: 8080      # a number or a workload port name; default: `port`
//         appProtocol: http     # http | kubernetes.io/h2c | opaque (| trellis.dev/opaque); default: detect
//
// the policy kinds Server, AuthorizationPolicy and HTTPLocalRateLimitPolicy (apiVersion policy.trellis.dev/v1alpha1,
// described and validated in src/control/policy/schema.ts), and the Gateway API route kinds
// HTTPRoute and GRPCRoute (gateway.networking.k8s.io/v1, validated by src/core/routes/schema.ts;
// one without metadata.creationTimestamp is stamped with the time it is read), and HTTPFault
// (traffic.trellis.dev/v1alpha1, fault injection a route rule names through ExtensionRef,
// validated by src/core/routes/fault.ts), and XBackendTrafficPolicy
// (gateway.networking.x-k8s.io/v1alpha1, a Service's retry budget, validated by
// src/core/routes/backend-traffic-policy.ts).
//
// A Service's traffic annotations (retry.trellis.io/*, timeout.trellis.io/*, balancer.trellis.io/*,
// src/core/routes/service-annotations.ts) are kept and checked; other fields Kubernetes manifests
// commonly carry but one-machine mode has no use for (labels, other annotations, selector, type,
// protocol: TCP) are accepted and ignored; any other field is an
// error, so typos are caught. A file's errors are reported all at once, one line each, naming the
// source, the line and column, the document (1-based, counting every document of the file) and the
// field: `services.yaml:9:22: document 2: spec.ports.0.port: expected a port 1..65535`.
//
// `danglingReferences` finds what the resources name but no one defines (an AuthorizationPolicy's
// Server, a Server's workload, a route's parent Service and backends), for `trellis apply` to
// warn about.
import * as v from 'valibot';
import { LineCounter, parseAllDocuments, type Document } from 'yaml';
import { offsetOfPath, repeatedKeyOffset, REPEATED_KEY, YAML_OPTIONS } from '../core/yaml-position.ts';
import { ConfigError } from '../core/errors.ts';
import {
  BACKEND_POLICY_KIND,
  validateBackendPolicy,
  type BackendPolicyResource,
} from '../core/routes/backend-traffic-policy.ts';
import { validateFault, type FaultResource } from '../core/routes/fault.ts';
import { validateRoute } from '../core/routes/parse.ts';
import type { RouteResource } from '../core/routes/schema.ts';
import { annotationFieldIssues, trafficAnnotations } from '../core/routes/service-annotations.ts';
import { dnsLabel, port, type PortProtocol } from '../core/schema.ts';
import type { ServiceFile } from './discovery/local-state.ts';
import type {
  AuthorizationPolicyResource,
  PolicyResource,
  RateLimitPolicyResource,
  ServerResource,
} from './policy/model.ts';
import {
  authorizationPolicySchema,
  metadataSchema,
  objectIssue,
  rateLimitPolicySchema,
  serverSchema,
  stringMap,
} from './policy/schema.ts';

/** appProtocol values and the state folder's protocol each one means. */
const APP_PROTOCOLS = {
  http: 'http1',
  'kubernetes.io/h2c': 'h2',
  opaque: 'opaque',
  'trellis.dev/opaque': 'opaque',
} as const satisfies Record<string, PortProtocol>;
type AppProtocol = keyof typeof APP_PROTOCOLS;

const servicePortSchema = v.strictObject(
  {
    name: v.optional(dnsLabel),
    port,
    targetPort: v.optional(v.union([port, dnsLabel], 'expected a port number or a port name')),
    appProtocol: v.optional(
      v.picklist(
        Object.keys(APP_PROTOCOLS) as AppProtocol[],
        `expected one of ${Object.keys(APP_PROTOCOLS).join(', ')}`,
      ),
    ),
    protocol: v.optional(v.literal('TCP', 'only TCP is supported')),
  },
  objectIssue,
);

const serviceSchema = v.strictObject(
  {
    apiVersion: v.literal('v1', 'expected v1'),
    kind: v.literal('Service', 'expected Service'),
    metadata: metadataSchema,
    spec: v.strictObject(
      {
        ports: v.pipe(
          v.array(servicePortSchema, 'expected a list'),
          v.minLength(1, 'needs at least one port'),
          v.check(
            (ports) => new Set(ports.map((p) => p.port)).size === ports.length,
            'two ports with the same port number',
          ),
        ),
        selector: v.optional(stringMap),
        type: v.optional(v.literal('ClusterIP', 'only ClusterIP is supported')),
      },
      objectIssue,
    ),
  },
  objectIssue,
);

/** A validated Service, ready for writeServiceFile. */
export interface ServiceResource {
  readonly kind: 'Service';
  readonly namespace: string;
  readonly name: string;
  readonly service: ServiceFile;
}

export type Resource =
  ServiceResource | PolicyResource | RouteResource | FaultResource | BackendPolicyResource;

/** The kinds `trellis apply` accepts. */
export const RESOURCE_KINDS = [
  'Service',
  'Server',
  'AuthorizationPolicy',
  'HTTPRoute',
  'GRPCRoute',
  'HTTPFault',
  'HTTPLocalRateLimitPolicy',
  BACKEND_POLICY_KIND,
] as const;

/** "service/NAME.NAMESPACE" ("server/...", "authorizationpolicy/..."), as `trellis apply` prints it. */
export function resourceName(resource: Resource): string {
  return `${resource.kind.toLowerCase()}/${resource.name}.${resource.namespace}`;
}

/** A problem of one resource: where in it (the field's path), and what. */
interface Issue {
  readonly path: readonly (string | number)[];
  readonly message: string;
}

/**
 * Parses and validates every document of `text` (empty documents are skipped). Throws one
 * ConfigError listing every problem of the text, a line each (see readResources); nothing else.
 */
export function parseResources(text: string, source: string): Resource[] {
  const { resources, problems } = readResources(text, source);
  if (problems.length > 0) throw new ConfigError('', problems.join('\n'));
  return resources;
}

/**
 * The valid resources of `text`, and each problem of it as
 * "SOURCE:LINE:COLUMN: document N: FIELD: message" (never throws).
 */
export function readResources(text: string, source: string): { resources: Resource[]; problems: string[] } {
  const lines = new LineCounter();
  const documents = parseAllDocuments(text, { ...YAML_OPTIONS, lineCounter: lines });
  const resources: Resource[] = [];
  const problems: string[] = [];
  const at = (offset: number, index: number): string => {
    const { line, col } = lines.linePos(offset);
    return `${source}:${line}:${col}: document ${index + 1}`;
  };
  documents.forEach((document, index) => {
    if (document.errors.length > 0) {
      for (const error of document.errors)
        problems.push(`${at(error.pos[0], index)}: not valid YAML (${firstLine(error.message)})`);
      return;
    }
    const repeated = repeatedKeyOffset(document.contents);
    if (repeated !== null) {
      problems.push(`${at(repeated, index)}: not valid YAML (${REPEATED_KEY})`);
      return;
    }
    let raw: unknown;
    try {
      raw = document.toJS({ maxAliasCount: 100 });
    } catch (error) {
      problems.push(
        `${at(document.range[0], index)}: not valid YAML (${firstLine((error as Error).message)})`,
      );
      return;
    }
    if (raw === null || raw === undefined) return;
    const { resource, issues } = checkResource(raw);
    if (resource !== null) resources.push(resource);
    for (const issue of issues) {
      const field = issue.path.join('.');
      problems.push(
        `${at(offsetOf(document, issue), index)}: ${field === '' ? '' : `${field}: `}${issue.message}`,
      );
    }
  });
  return { resources, problems };
}

/** Where an issue is in the document: the value at its path (the key, for an unknown field). */
function offsetOf(document: Document.Parsed, issue: Issue): number {
  return offsetOfPath(document, issue.path, issue.message === 'unknown field');
}

/** One document's resource, or null with every issue found. */
function checkResource(raw: unknown): { resource: Resource | null; issues: Issue[] } {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    return {
      resource: null,
      issues: [{ path: [], message: 'expected an object with apiVersion, kind, metadata and spec' }],
    };
  }
  const kind = (raw as Record<string, unknown>).kind;
  switch (kind) {
    case 'Service': {
      const result = validate(serviceSchema, raw);
      if (!result.ok) return { resource: null, issues: result.issues };
      const annotationIssues = annotationFieldIssues(result.output.metadata.annotations);
      if (annotationIssues.length > 0) return { resource: null, issues: annotationIssues };
      return { resource: serviceResource(result.output), issues: [] };
    }
    case 'Server':
    case 'AuthorizationPolicy':
    case 'HTTPLocalRateLimitPolicy':
      return checkPolicyResource(raw);
    case 'HTTPRoute':
    case 'GRPCRoute': {
      const { route, issues } = validateRoute(raw, Date.now());
      return { resource: route, issues };
    }
    case 'HTTPFault': {
      const { fault, issues } = validateFault(raw);
      return { resource: fault, issues };
    }
    case BACKEND_POLICY_KIND: {
      const { policy, issues } = validateBackendPolicy(raw, Date.now());
      return { resource: policy, issues };
    }
    default:
      return {
        resource: null,
        issues: [
          { path: ['kind'], message: `expected one of ${RESOURCE_KINDS.join(', ')}, got ${describe(kind)}` },
        ],
      };
  }
}

/**
 * Validates one Server or AuthorizationPolicy object (a CRD object from the Kubernetes API); throws
 * a ConfigError naming `where` and the field of its first problem.
 */
export function parsePolicyResource(raw: unknown, where: string): PolicyResource {
  const { resource, issues } = checkPolicyResource(raw);
  const issue = issues[0];
  if (resource !== null && issue === undefined) return resource;
  const field = issue?.path.join('.') ?? '';
  throw new ConfigError(field === '' ? where : `${where}: ${field}`, issue?.message ?? 'invalid');
}

function checkPolicyResource(raw: unknown): { resource: PolicyResource | null; issues: Issue[] } {
  const kind = (raw as Record<string, unknown> | null)?.kind;
  if (kind === 'Server') {
    const result = validate(serverSchema, raw);
    if (!result.ok) return { resource: null, issues: result.issues };
    const { metadata, spec } = result.output;
    const server: ServerResource = {
      kind: 'Server',
      namespace: metadata.namespace,
      name: metadata.name,
      spec: {
        ...(spec.workload === undefined ? {} : { workload: spec.workload }),
        ...(spec.podSelector === undefined
          ? {}
          : { podSelector: { matchLabels: spec.podSelector.matchLabels } }),
        port: spec.port,
        protocol: spec.protocol,
      },
    };
    return { resource: server, issues: [] };
  }
  if (kind === 'AuthorizationPolicy') {
    const result = validate(authorizationPolicySchema, raw);
    if (!result.ok) return { resource: null, issues: result.issues };
    const { metadata, spec } = result.output;
    const policy: AuthorizationPolicyResource = {
      kind: 'AuthorizationPolicy',
      namespace: metadata.namespace,
      name: metadata.name,
      spec: { server: spec.server, from: spec.from, routes: spec.routes },
    };
    return { resource: policy, issues: [] };
  }
  if (kind === 'HTTPLocalRateLimitPolicy') {
    const result = validate(rateLimitPolicySchema, raw);
    if (!result.ok) return { resource: null, issues: result.issues };
    const { metadata, spec } = result.output;
    const limits: RateLimitPolicyResource = {
      kind: 'HTTPLocalRateLimitPolicy',
      namespace: metadata.namespace,
      name: metadata.name,
      spec: {
        targetRef: spec.targetRef,
        ...(spec.total === undefined ? {} : { total: spec.total }),
        ...(spec.identity === undefined ? {} : { identity: spec.identity }),
        overrides: spec.overrides,
      },
    };
    return { resource: limits, issues: [] };
  }
  return {
    resource: null,
    issues: [
      {
        path: ['kind'],
        message: `expected Server, AuthorizationPolicy or HTTPLocalRateLimitPolicy, got ${describe(kind)}`,
      },
    ],
  };
}

function validate<T extends v.GenericSchema>(
  schema: T,
  raw: unknown,
): { ok: true; output: v.InferOutput<T> } | { ok: false; issues: Issue[] } {
  const result = v.safeParse(schema, raw);
  if (result.success) return { ok: true, output: result.output };
  const issues = result.issues.map((issue) => ({
    path: issue.path?.map((item) => item.key as string | number) ?? [],
    message: issue.message,
  }));
  return { ok: false, issues };
}

function serviceResource({ metadata, spec }: v.InferOutput<typeof serviceSchema>): ServiceResource {
  const annotations = trafficAnnotations(metadata.annotations);
  return {
    kind: 'Service',
    namespace: metadata.namespace,
    name: metadata.name,
    service: {
      ports: spec.ports.map((p) => ({
        port: p.port,
        ...(p.name === undefined ? {} : { name: p.name }),
        ...(p.targetPort === undefined ? {} : { targetPort: p.targetPort }),
        protocol: p.appProtocol === undefined ? 'auto' : APP_PROTOCOLS[p.appProtocol],
      })),
      ...(Object.keys(annotations).length > 0 ? { annotations } : {}),
    },
  };
}

function firstLine(message: string): string {
  return message.split('\n')[0] ?? message;
}

function describe(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value.length > 40 ? value.slice(0, 40) + '…' : value);
  if (value === undefined) return 'nothing';
  return Array.isArray(value) ? 'a list' : value === null ? 'null' : typeof value;
}

/** What a state folder already defines, each as "namespace/name". */
export interface DefinedNames {
  readonly servers: ReadonlySet<string>;
  /** Services and registered workloads (on one machine a workload is named after its service). */
  readonly workloads: ReadonlySet<string>;
}

/**
 * One line for each reference of `resources` to a Server or a workload that neither they nor
 * `defined` define: an AuthorizationPolicy's spec.server, a Server's spec.workload.
 */
export function danglingReferences(resources: readonly Resource[], defined: DefinedNames): string[] {
  const key = (namespace: string, name: string) => `${namespace}/${name}`;
  const servers = new Set(defined.servers);
  const workloads = new Set(defined.workloads);
  for (const r of resources) {
    if (r.kind === 'Server') servers.add(key(r.namespace, r.name));
    if (r.kind === 'Service') workloads.add(key(r.namespace, r.name));
  }
  const warnings: string[] = [];
  for (const r of resources) {
    if (r.kind === 'AuthorizationPolicy' && !servers.has(key(r.namespace, r.spec.server))) {
      warnings.push(
        `${resourceName(r)}: spec.server: no Server ${r.spec.server} in namespace ${r.namespace}; it admits no one until there is one`,
      );
    }
    if (r.kind === 'HTTPRoute' || r.kind === 'GRPCRoute') warnings.push(...routeDangling(r, workloads));
    if (r.kind === 'HTTPLocalRateLimitPolicy' && !servers.has(key(r.namespace, r.spec.targetRef.name))) {
      warnings.push(
        `${resourceName(r)}: spec.targetRef: no Server ${r.spec.targetRef.name} in namespace ${r.namespace}; it limits nothing until there is one`,
      );
    }
    if (r.kind === BACKEND_POLICY_KIND)
      r.spec.targetRefs.forEach((ref, i) => {
        if (!workloads.has(key(r.namespace, ref.name)))
          warnings.push(
            `${resourceName(r)}: spec.targetRefs.${i}: no service ${ref.name} in namespace ${r.namespace}; it applies to none until there is one`,
          );
      });
    const workload = r.kind === 'Server' ? r.spec.workload : undefined;
    if (workload !== undefined && !workloads.has(key(r.namespace, workload))) {
      warnings.push(
        `${resourceName(r)}: spec.workload: no service or workload ${workload} in namespace ${r.namespace}; it selects nothing until there is one`,
      );
    }
  }
  return warnings;
}

/**
 * A route's parent Services and backends that no service defines (by name; ports are for its
 * status), and its retry-budget annotations, which do nothing on a route: the budget is the
 * Service's, so that a consumer route of another namespace cannot lift it.
 */
function routeDangling(route: RouteResource, services: ReadonlySet<string>): string[] {
  const warnings: string[] = [];
  for (const name of Object.keys(route.annotations ?? {}))
    if (name.startsWith('retry.trellis.io/budget-'))
      warnings.push(
        `${resourceName(route)}: metadata.annotations.${name}: the retry budget is the Service's (its annotations or an XBackendTrafficPolicy); on a route it does nothing`,
      );
  const missing = (namespace: string, name: string) => !services.has(`${namespace}/${name}`);
  route.spec.parentRefs.forEach((ref, i) => {
    const namespace = ref.namespace ?? route.namespace;
    if (ref.group !== '' || ref.kind !== 'Service')
      warnings.push(
        `${resourceName(route)}: spec.parentRefs.${i}: Trellis routes attach to Services (group "", kind Service); this parent is never attached`,
      );
    else if (missing(namespace, ref.name))
      warnings.push(
        `${resourceName(route)}: spec.parentRefs.${i}: no service ${ref.name} in namespace ${namespace}; the route is not attached until there is one`,
      );
  });
  route.spec.rules.forEach((rule, i) =>
    rule.backendRefs.forEach((ref, j) => {
      const namespace = ref.namespace ?? route.namespace;
      if (ref.group === '' && ref.kind === 'Service' && missing(namespace, ref.name))
        warnings.push(
          `${resourceName(route)}: spec.rules.${i}.backendRefs.${j}: no service ${ref.name} in namespace ${namespace}; its share of requests gets 500 until there is one`,
        );
    }),
  );
  return warnings;
}
