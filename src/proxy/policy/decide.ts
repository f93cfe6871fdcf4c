// Authorization decisions, as pure functions over a compiled policy. compilePolicy turns the
// control plane's InboundPolicy message into per-port lookups with identity patterns and networks
// compiled once; decideConnection and decideRequest then answer per connection and per request
// without allocating more than the Decision itself. A Server's rate limit is compiled into its
// limiter (rate-limit.ts); a policy compiled over the previous one keeps the limiter (and its
// buckets) of every port whose limit did not change, so that a policy update (or the same policy
// again after a re-watch) never hands clients a fresh second of requests.
//
// Semantics (src/api/policy.proto, after linkerd's policy controller):
// - A port no Server selects falls back to the proxy's default policy. audit allows everything
//   but marks `audited` when all-authenticated would have denied (an unauthenticated peer).
// - A port a Server selects admits only what one of its authorizations allows, whatever the
//   default policy is (audit only softens the default, never a Server's denial).
// - Opaque TCP versus HTTP: an authorization with routes admits only HTTP requests that match one
//   of its routes. At connection time (`traffic`), an HTTP connection is admitted when some
//   authorization's "who" matches (its routes are checked again per request); an opaque TCP
//   connection never sees a request, so only authorizations without routes can admit it.
import type { ApiInboundPolicyOutput, ApiRateLimitOutput } from '../../api/client.ts';
import { isPort, SERVER_PROTOCOLS } from '../../core/schema.ts';
import {
  compileIdentityPattern,
  compileNetworks,
  type IdentityMatcher,
  type NetworkMatcher,
  type RouteSpec,
  routeMatches,
} from './match.ts';
import { spiffeNamespace } from '../../core/spiffe.ts';
import { RateLimiter } from './rate-limit.ts';
import type { Decision, DefaultPolicy, HttpRequestFacts, InboundPeer, ServerProtocol } from './types.ts';

/** What a connection carries, as far as the data path knows when it asks. */
export type ConnectionTraffic = 'http' | 'opaque';

export interface CompiledAuthorization {
  readonly name: string;
  readonly identities: readonly IdentityMatcher[];
  readonly namespaces: ReadonlySet<string>;
  readonly networks: NetworkMatcher;
  readonly unauthenticated: boolean;
  /** Empty: the whole server. */
  readonly routes: readonly RouteSpec[];
}

export interface CompiledServer {
  readonly name: string;
  readonly port: number;
  readonly protocol: ServerProtocol;
  readonly authorizations: readonly CompiledAuthorization[];
  /** `<name>:no-authorization`, built once. */
  readonly denyPolicy: string;
  /** The Server's HTTPLocalRateLimitPolicy (rate-limit.ts), null when none. */
  readonly rateLimit: RateLimiter | null;
}

export interface CompiledPolicy {
  readonly servers: ReadonlyMap<number, CompiledServer>;
}

export const EMPTY_POLICY: CompiledPolicy = { servers: new Map() };

const PROTOCOLS: ReadonlySet<string> = new Set(SERVER_PROTOCOLS);

/**
 * Compiles a policy message. Never throws: a Server with a bad port or a second Server on the same
 * port is skipped, an unknown protocol reads as detect, and a CIDR that does not parse is ignored;
 * each is reported through `warn` (the control plane validates all of them, so these mean a bug or
 * a newer control plane). `previous`: the policy this one replaces, whose unchanged rate limiters
 * are kept.
 */
export function compilePolicy(
  message: ApiInboundPolicyOutput,
  warn: (msg: string, fields: Record<string, unknown>) => void = () => {},
  previous: CompiledPolicy = EMPTY_POLICY,
): CompiledPolicy {
  const servers = new Map<number, CompiledServer>();
  for (const server of message.servers ?? []) {
    const port = server.port;
    if (!isPort(port)) {
      warn('policy server has no valid port; skipped', { server: server.name, port });
      continue;
    }
    const existing = servers.get(port);
    if (existing !== undefined) {
      // Servers come in name order, so the first one wins the same way on every proxy.
      warn('two policy servers select the same port; the first by name applies', {
        port,
        applies: existing.name,
        ignored: server.name,
      });
      continue;
    }
    if (!PROTOCOLS.has(server.protocol)) {
      warn('policy server has an unknown protocol; using detect', {
        server: server.name,
        protocol: server.protocol,
      });
    }
    servers.set(port, {
      name: server.name,
      port,
      protocol: PROTOCOLS.has(server.protocol) ? (server.protocol as ServerProtocol) : 'detect',
      authorizations: (server.authorizations ?? []).map((authz) => {
        const networks = compileNetworks(authz.networks ?? []);
        if (networks.invalid.length > 0) {
          warn('authorization has networks that are not CIDRs; ignored', {
            authorization: authz.name,
            networks: networks.invalid,
          });
        }
        return {
          name: authz.name,
          identities: (authz.identities ?? []).map(compileIdentityPattern),
          namespaces: new Set(authz.namespaces ?? []),
          networks: networks.matches,
          unauthenticated: authz.unauthenticated === true,
          routes: (authz.routes ?? []).map((r) => ({
            path: r.path,
            methods: (r.methods ?? []).map((m) => m.toUpperCase()),
          })),
        };
      }),
      denyPolicy: `${server.name}:no-authorization`,
      rateLimit: compileRateLimit(server.rateLimit, previous.servers.get(port)?.rateLimit ?? null, warn),
    });
  }
  return { servers };
}

/** The Server's limiter: the previous one while its limit is the same, else a new one. */
function compileRateLimit(
  limit: ApiRateLimitOutput | null | undefined,
  previous: RateLimiter | null,
  warn: (msg: string, fields: Record<string, unknown>) => void,
): RateLimiter | null {
  if (limit === null || limit === undefined) return null;
  if (previous !== null && previous.sameLimit(limit)) return previous;
  return new RateLimiter(limit, {
    onFull: (max) =>
      warn('rate limit holds the most client identities it keeps; ones not used recently are evicted', {
        rateLimit: limit.name,
        max,
      }),
  });
}

/** Whether the peer is one this authorization's "who" names. */
export function whoMatches(authz: CompiledAuthorization, peer: InboundPeer): boolean {
  if (authz.unauthenticated) return true;
  const identity = peer.identity;
  if (identity !== null && identity !== '') {
    for (const matches of authz.identities) if (matches(identity)) return true;
    if (authz.namespaces.size > 0) {
      const ns = spiffeNamespace(identity);
      if (ns !== null && authz.namespaces.has(ns)) return true;
    }
  }
  return authz.networks(peer.ip);
}

/** The default policy's decision for a port no Server selects. */
export function defaultDecision(policy: DefaultPolicy, peer: InboundPeer): Decision {
  const label = DEFAULT_LABELS[policy];
  const authenticated = peer.identity !== null && peer.identity !== '';
  switch (policy) {
    case 'all-unauthenticated':
      return label.allow;
    case 'all-authenticated':
      return authenticated ? label.allow : label.deny;
    case 'deny':
      return label.deny;
    case 'audit':
      return authenticated ? label.allow : label.audited;
  }
}

/** Decisions for default policies, built once (they are immutable). */
const DEFAULT_LABELS = Object.fromEntries(
  (['all-unauthenticated', 'all-authenticated', 'deny', 'audit'] as const).map((policy) => {
    const name = `default:${policy}`;
    return [
      policy,
      {
        allow: Object.freeze({ allowed: true, server: name, policy: name, audited: false }),
        deny: Object.freeze({ allowed: false, server: name, policy: name, audited: false }),
        audited: Object.freeze({ allowed: true, server: name, policy: name, audited: true }),
      },
    ];
  }),
) as Record<DefaultPolicy, { allow: Decision; deny: Decision; audited: Decision }>;

/**
 * A connection to `port`. `traffic` says whether the data path will go on to ask per HTTP request
 * ('http') or will only ever ask this once ('opaque'); a Server declared opaque is always treated
 * as opaque.
 */
export function decideConnection(
  policy: CompiledPolicy,
  defaultPolicy: DefaultPolicy,
  port: number,
  peer: InboundPeer,
  traffic: ConnectionTraffic,
): Decision {
  const server = policy.servers.get(port);
  if (server === undefined) return defaultDecision(defaultPolicy, peer);
  const http = traffic === 'http' && server.protocol !== 'opaque';
  for (const authz of server.authorizations) {
    if (!http && authz.routes.length > 0) continue;
    if (whoMatches(authz, peer)) return allowed(server, authz);
  }
  return denied(server);
}

/** One HTTP request to `port`: some authorization must match both the peer and the request. */
export function decideRequest(
  policy: CompiledPolicy,
  defaultPolicy: DefaultPolicy,
  port: number,
  peer: InboundPeer,
  request: HttpRequestFacts,
): Decision {
  const server = policy.servers.get(port);
  if (server === undefined) return defaultDecision(defaultPolicy, peer);
  for (const authz of server.authorizations) {
    if (authz.routes.length > 0 && !authz.routes.some((route) => routeMatches(route, request))) continue;
    if (whoMatches(authz, peer)) return allowed(server, authz);
  }
  return denied(server);
}

function allowed(server: CompiledServer, authz: CompiledAuthorization): Decision {
  return { allowed: true, server: server.name, policy: authz.name, audited: false };
}

function denied(server: CompiledServer): Decision {
  return { allowed: false, server: server.name, policy: server.denyPolicy, audited: false };
}
