// What the inbound data path asks of authorization policy (src/proxy/policy/): a decision per
// connection (opaque TCP, and as a first gate for HTTP) and per HTTP request. The authorizer holds
// the policy the control plane last sent (Policy.WatchInbound) and the proxy's default policy for
// ports no Server selects.
import type { ServerProtocol } from '../../core/schema.ts';

export type { ServerProtocol };

export { DEFAULT_POLICIES, type DefaultPolicy } from '../../core/policy-syntax.ts';

export interface InboundPeer {
  /** The client's verified SPIFFE ID (mTLS), or null for a plaintext or unmeshed client. */
  readonly identity: string | null;
  /** The client's IP address as the proxy saw it. */
  readonly ip: string;
}

export interface HttpRequestFacts {
  readonly method: string;
  /** The request path without the query string. */
  readonly path: string;
}

export interface Decision {
  readonly allowed: boolean;
  /**
   * The Server that selected the port ("<namespace>/<name>"), or "default:<policy>" when none did
   * (linkerd labels its metrics the same way).
   */
  readonly server: string;
  /**
   * What decided: the AuthorizationPolicy that allowed ("<namespace>/<name>"), or, for a denial,
   * the default policy ("default:deny") or "<server>:no-authorization" when the Server's
   * authorizations all failed to match.
   */
  readonly policy: string;
  /** Allowed only because the default policy is audit: every other rule would have denied it. */
  readonly audited: boolean;
}

export interface InboundAuthorizer {
  /**
   * A connection to the app port `port`. `traffic`: 'http' when the data path will also call
   * checkRequest for each request (a "who" that matches admits the connection, routes are checked
   * per request); 'opaque' when this is the only check (only authorizations without routes
   * admit). Left out, the Server's declared protocol decides (detect and opaque count as opaque:
   * the closed choice).
   */
  checkConnection(port: number, peer: InboundPeer, traffic?: 'http' | 'opaque'): Decision;
  /** One HTTP request to the app port `port`. */
  checkRequest(port: number, peer: InboundPeer, request: HttpRequestFacts): Decision;
  /**
   * One HTTP request of `identity` (null: unauthenticated) to the app port `port`, after it was
   * allowed: null when within the Server's rate limit (or it has none), else the limit it is over.
   */
  rateLimit?(port: number, identity: string | null): 'total' | 'identity' | 'override' | null;
  /** The protocol a Server declares for `port`, or null when no Server selects it. */
  protocolOf(port: number): ServerProtocol | null;
  /** Called after every policy change (open TCP connections are checked again). */
  onChange(listener: () => void): () => void;
  close(): void;
}
