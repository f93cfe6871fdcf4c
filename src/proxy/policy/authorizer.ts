// The proxy's InboundAuthorizer (types.ts): the default policy, plus, when the proxy has a
// policy address, the servers and authorizations the control plane streams through
// Policy.WatchInbound. Decisions are the pure functions of decide.ts over the last policy
// received; a new policy swaps one reference, so a decision never sees half an update.
//
// Opaque TCP versus HTTP at connection time: checkConnection takes an optional third argument,
// `traffic` ('http' | 'opaque'). An HTTP connection is admitted when some authorization's "who"
// matches (the routes are checked per request by checkRequest); an opaque one only by an
// authorization without routes, since no request will ever be checked. When the caller does not
// say, the Server's declared protocol decides: http1/http2/grpc mean HTTP, detect/opaque mean
// opaque, the safe reading (a route-scoped authorization never admits a raw TCP stream by
// accident). `PolicyAuthorizer` is the InboundAuthorizer with that optional argument.
//
// Rate limits: a Server's HTTPLocalRateLimitPolicy is checked per HTTP request once it is allowed
// (rateLimit, rate-limit.ts); a port no Server selects has none.
//
// Before the first policy arrives every port follows the default policy (as when no Server
// selects it); while the control plane is unreachable the last policy stays in force.
import type { ApiInboundPolicyOutput } from '../../api/client.ts';
import type { Timers } from '../../core/clock.ts';
import type { Logger } from '../../core/log.ts';
import type { Random } from '../../core/random.ts';
import {
  type CompiledPolicy,
  compilePolicy,
  type ConnectionTraffic,
  decideConnection,
  decideRequest,
  EMPTY_POLICY,
} from './decide.ts';
import type {
  Decision,
  DefaultPolicy,
  HttpRequestFacts,
  InboundAuthorizer,
  InboundPeer,
  ServerProtocol,
} from './types.ts';
import type { PolicyWatch } from './watch-client.ts';

export type { ConnectionTraffic } from './decide.ts';

export interface PolicyAuthorizer extends InboundAuthorizer {
  /** See the file comment: `traffic` defaults from the Server's declared protocol. */
  checkConnection(port: number, peer: InboundPeer, traffic?: ConnectionTraffic): Decision;
  /** Resolves when the first policy from the control plane has been applied (never without an address). */
  readonly firstPolicy: Promise<void>;
}

export interface AuthorizerOptions {
  defaultPolicy: DefaultPolicy;
  /** The control plane's Policy API, "host:port"; absent: only the default policy applies. */
  address?: string;
  namespace: string;
  workload: string;
  log: Logger;
  /** The workload's labels, sent in InboundRequest (Kubernetes podSelector matching). */
  labels?: Readonly<Record<string, string>>;
  /** Names of the app port to its number, sent in InboundRequest (named Servers resolve through them). */
  namedPorts?: Readonly<Record<string, number>>;
  /** Re-watch backoff (default 250 ms doubling to 10 s, with jitter). */
  backoff?: { initialMs?: number; maxMs?: number };
  timers?: Timers;
  random?: Random;
}

export function createAuthorizer(opts: AuthorizerOptions): PolicyAuthorizer {
  const log = opts.log.child({ component: 'policy' });
  const defaultPolicy = opts.defaultPolicy;
  const listeners = new Set<() => void>();
  let policy: CompiledPolicy = EMPTY_POLICY;
  let lastMessage = '';
  let watch: PolicyWatch | null = null;
  let closed = false;
  let markFirst: () => void = () => {};
  const firstPolicy = new Promise<void>((resolve) => {
    markFirst = resolve;
  });

  const apply = (message: ApiInboundPolicyOutput): void => {
    // Every re-watch starts with the full policy again; an identical one changes nothing.
    const key = JSON.stringify(message);
    markFirst();
    if (key === lastMessage) return;
    lastMessage = key;
    policy = compilePolicy(message, (msg, fields) => log.warn(msg, fields), policy);
    log.info('inbound policy updated', {
      servers: Array.from(policy.servers.values(), (s) => `${s.name}:${s.port}`),
    });
    for (const listener of Array.from(listeners)) {
      try {
        listener();
      } catch (error) {
        log.error('policy change listener failed', { error });
      }
    }
  };

  if (opts.address !== undefined && opts.address !== '') {
    const address = opts.address;
    // gRPC is loaded only here, so a proxy without a policy address never pays for it.
    import('./watch-client.ts')
      .then(({ watchInboundPolicy }) => {
        if (closed) return;
        watch = watchInboundPolicy({
          address,
          namespace: opts.namespace,
          workload: opts.workload,
          ...(opts.labels === undefined ? {} : { labels: opts.labels }),
          ...(opts.namedPorts === undefined ? {} : { namedPorts: opts.namedPorts }),
          ...(opts.backoff === undefined ? {} : { backoff: opts.backoff }),
          ...(opts.timers === undefined ? {} : { timers: opts.timers }),
          ...(opts.random === undefined ? {} : { random: opts.random }),
          log,
          onPolicy: (message) => {
            if (!closed) apply(message);
          },
        });
      })
      .catch((error: unknown) =>
        log.error('cannot start the policy watch; only the default policy applies', { error }),
      );
  }

  return {
    firstPolicy,
    checkConnection(port, peer, traffic) {
      const kind = traffic ?? declaredTraffic(policy, port);
      return decideConnection(policy, defaultPolicy, port, peer, kind);
    },
    checkRequest(port, peer, request: HttpRequestFacts) {
      return decideRequest(policy, defaultPolicy, port, peer, request);
    },
    rateLimit(port, identity) {
      return policy.servers.get(port)?.rateLimit?.check(identity) ?? null;
    },
    protocolOf(port): ServerProtocol | null {
      return policy.servers.get(port)?.protocol ?? null;
    },
    onChange(listener) {
      listeners.add(listener);
      return () => {
        listeners.delete(listener);
      };
    },
    close() {
      if (closed) return;
      closed = true;
      listeners.clear();
      watch?.close();
      watch = null;
    },
  };
}

function declaredTraffic(policy: CompiledPolicy, port: number): ConnectionTraffic {
  const protocol = policy.servers.get(port)?.protocol;
  return protocol === 'http1' || protocol === 'http2' || protocol === 'grpc' ? 'http' : 'opaque';
}
