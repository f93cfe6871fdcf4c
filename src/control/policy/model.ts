// The control plane's policy model: validated Server and AuthorizationPolicy resources (as
// src/control/resources.ts produces them, from `trellis apply -f` files or CRDs), and the pure
// translation of a set of them into the InboundPolicy one workload's proxy watches
// (src/api/policy.proto). Both policy sources (local.ts, kubernetes.ts) hand the same snapshot to
// buildInboundPolicy, so one machine and Kubernetes mean exactly the same thing.
//
// Selection: a Server selects a workload by `workload: NAME` (the name the proxy watches with:
// the service it registers under on one machine, the pod's name on Kubernetes) or by
// `podSelector.matchLabels` (every label equal; an empty matchLabels selects every workload of
// the namespace, as in Kubernetes). Its port is a number, or a port name that the workload's
// known ports resolve; a Server whose named port cannot be resolved is skipped and reported.
// Authorizations attach to a Server by name in the same namespace, and so does an
// HTTPLocalRateLimitPolicy (its targetRef; when two target one Server, the first by name applies).
import type { ApiAuthorization, ApiInboundPolicy, ApiRateLimit, ApiServer } from '../../api/load.ts';
import type { ServerProtocol } from '../../core/schema.ts';

export interface ServerSpec {
  readonly workload?: string | undefined;
  readonly podSelector?: { readonly matchLabels: Readonly<Record<string, string>> } | undefined;
  readonly port: number | string;
  readonly protocol: ServerProtocol;
}

export interface AuthorizationPolicySpec {
  readonly server: string;
  readonly from: {
    readonly identities: readonly string[];
    readonly namespaces: readonly string[];
    readonly networks: readonly string[];
    readonly unauthenticated: boolean;
  };
  /** Empty: the whole server. */
  readonly routes: readonly { readonly path: string; readonly methods: readonly string[] }[];
}

export interface ServerResource {
  readonly kind: 'Server';
  readonly namespace: string;
  readonly name: string;
  readonly spec: ServerSpec;
}

export interface AuthorizationPolicyResource {
  readonly kind: 'AuthorizationPolicy';
  readonly namespace: string;
  readonly name: string;
  readonly spec: AuthorizationPolicySpec;
}

export interface RateLimitPolicySpec {
  readonly targetRef: { readonly group: string; readonly kind: string; readonly name: string };
  readonly total?: { readonly requestsPerSecond: number } | undefined;
  readonly identity?: { readonly requestsPerSecond: number } | undefined;
  readonly overrides: readonly {
    readonly requestsPerSecond: number;
    readonly identities: readonly string[];
  }[];
}

export interface RateLimitPolicyResource {
  readonly kind: 'HTTPLocalRateLimitPolicy';
  readonly namespace: string;
  readonly name: string;
  readonly spec: RateLimitPolicySpec;
}

export type PolicyResource = ServerResource | AuthorizationPolicyResource | RateLimitPolicyResource;

/** Every policy resource a source knows, at one moment. */
export interface PolicySnapshot {
  readonly servers: readonly ServerResource[];
  readonly authorizations: readonly AuthorizationPolicyResource[];
  /** HTTPLocalRateLimitPolicies (none when absent: the Kubernetes source does not read them yet). */
  readonly rateLimits?: readonly RateLimitPolicyResource[];
}

export const EMPTY_SNAPSHOT: PolicySnapshot = { servers: [], authorizations: [] };

/** What the control plane knows of one workload, to select and resolve Servers. */
export interface WorkloadFacts {
  readonly namespace: string;
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  /** Port names to the app's port numbers; empty when unknown. */
  readonly namedPorts: ReadonlyMap<string, number>;
}

/** A Server that selects the workload but could not be used (a port name that does not resolve). */
export interface SkippedServer {
  readonly server: string;
  readonly reason: string;
}

/** Whether `server` selects the workload. */
export function selects(server: ServerResource, workload: WorkloadFacts): boolean {
  if (server.namespace !== workload.namespace) return false;
  const spec = server.spec;
  if (spec.workload !== undefined) return spec.workload === workload.name;
  const wanted = spec.podSelector?.matchLabels ?? {};
  return Object.entries(wanted).every(([key, value]) => workload.labels[key] === value);
}

/**
 * The InboundPolicy of one workload: the Servers that select it, in name order, each with the
 * AuthorizationPolicies of its namespace that name it (in name order). Servers whose named port
 * does not resolve are left out and returned in `skipped`.
 */
export function buildInboundPolicy(
  snapshot: PolicySnapshot,
  workload: WorkloadFacts,
): { policy: ApiInboundPolicy; skipped: SkippedServer[] } {
  const skipped: SkippedServer[] = [];
  const servers: ApiServer[] = [];
  const selected = snapshot.servers.filter((s) => selects(s, workload)).sort(byName);
  for (const server of selected) {
    const name = `${server.namespace}/${server.name}`;
    const port =
      typeof server.spec.port === 'number' ? server.spec.port : workload.namedPorts.get(server.spec.port);
    if (port === undefined) {
      skipped.push({
        server: name,
        reason: `port name "${String(server.spec.port)}" is not a port of this workload`,
      });
      continue;
    }
    const authorizations = snapshot.authorizations
      .filter((a) => a.namespace === server.namespace && a.spec.server === server.name)
      .sort(byName)
      .map(toApiAuthorization);
    const rateLimit = (snapshot.rateLimits ?? [])
      .filter((r) => r.namespace === server.namespace && r.spec.targetRef.name === server.name)
      .sort(byName)[0];
    servers.push({
      name,
      port,
      protocol: server.spec.protocol,
      authorizations,
      ...(rateLimit === undefined ? {} : { rateLimit: toApiRateLimit(rateLimit) }),
    });
  }
  return { policy: { servers }, skipped };
}

function toApiAuthorization(resource: AuthorizationPolicyResource): ApiAuthorization {
  const { from, routes } = resource.spec;
  return {
    name: `${resource.namespace}/${resource.name}`,
    identities: [...from.identities],
    namespaces: [...from.namespaces],
    networks: [...from.networks],
    unauthenticated: from.unauthenticated,
    routes: routes.map((r) => ({ path: r.path, methods: [...r.methods] })),
  };
}

function toApiRateLimit(resource: RateLimitPolicyResource): ApiRateLimit {
  const { total, identity, overrides } = resource.spec;
  return {
    name: `${resource.namespace}/${resource.name}`,
    totalRps: total?.requestsPerSecond ?? 0,
    identityRps: identity?.requestsPerSecond ?? 0,
    overrides: overrides.map((o) => ({
      requestsPerSecond: o.requestsPerSecond,
      identities: [...o.identities],
    })),
  };
}

function byName(a: { name: string }, b: { name: string }): number {
  return a.name < b.name ? -1 : a.name > b.name ? 1 : 0;
}
