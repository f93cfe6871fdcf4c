// Endpoints and the updates that change a set of them: the vocabulary of service discovery that
// the control plane's watchers and Destination API produce (src/control/discovery/,
// src/control/destination/) and the proxy's resolvers and balancer consume
// (src/proxy/resolve/resolver.ts, src/proxy/balance/endpoint-set.ts).
//
// Updates follow linkerd: `reset` replaces the whole set, `add` adds or refreshes endpoints,
// `remove` drops endpoints by address key, `does-not-exist` says the target is unknown (the set
// becomes empty; `ports` lists the ports of a service that exists, but not on the port asked
// for). Address keys are `targetKey(address)` from src/core/target.ts: "host:port", or
// "[v6]:port" for IPv6 hosts.

export type ProtocolHint = 'unknown' | 'h2' | 'opaque';

export interface EndpointAddress {
  readonly host: string;
  readonly port: number;
}

export interface Endpoint {
  readonly address: EndpointAddress;
  /** Relative share of traffic; the balancer divides an endpoint's cost by it. 1 by default. */
  readonly weight: number;
  /** Metadata from discovery (zone, pod, ...), used for metrics labels. */
  readonly labels: Readonly<Record<string, string>>;
  /** True when a Trellis proxy runs beside the endpoint (connect with mTLS). */
  readonly meshed: boolean;
  /** The identity (SPIFFE ID) the endpoint's certificate must carry, when meshed. */
  readonly identity: string | null;
  readonly protocolHint: ProtocolHint;
}

export type Update =
  | { readonly kind: 'reset'; readonly endpoints: readonly Endpoint[] }
  | { readonly kind: 'add'; readonly endpoints: readonly Endpoint[] }
  | { readonly kind: 'remove'; readonly addresses: readonly string[] }
  | { readonly kind: 'does-not-exist'; readonly ports?: readonly number[] };

/** The identity a meshed endpoint must prove, or null when it is reached in plaintext. */
export function meshIdentityOf(endpoint: Endpoint | null): string | null {
  if (endpoint === null || !endpoint.meshed) return null;
  const id = endpoint.identity;
  return id !== null && id !== '' ? id : null;
}
