// Original file: src/api/policy.proto

import type {
  HttpRoute as _trellis_policy_v1_HttpRoute,
  HttpRoute__Output as _trellis_policy_v1_HttpRoute__Output,
} from '../../../trellis/policy/v1/HttpRoute.ts';

export interface Authorization {
  /**
   * "<namespace>/<name>" of the AuthorizationPolicy.
   */
  name?: string;
  /**
   * Who: a client matches when it matches any one of these.
   * SPIFFE IDs; "*" matches any run of characters within one path segment, a lone "*" any
   * authenticated client.
   */
  identities?: string[];
  /**
   * Authenticated clients whose identity is in one of these namespaces.
   */
  namespaces?: string[];
  /**
   * Client addresses in CIDR form ("198.18.0.0/15", "::1/128"); these admit unauthenticated
   * clients too.
   */
  networks?: string[];
  /**
   * Any client at all, with or without an identity.
   */
  unauthenticated?: boolean;
  /**
   * What: empty means the whole server; else only requests matching one of these routes.
   */
  routes?: _trellis_policy_v1_HttpRoute[];
}

export interface Authorization__Output {
  /**
   * "<namespace>/<name>" of the AuthorizationPolicy.
   */
  name: string;
  /**
   * Who: a client matches when it matches any one of these.
   * SPIFFE IDs; "*" matches any run of characters within one path segment, a lone "*" any
   * authenticated client.
   */
  identities: string[];
  /**
   * Authenticated clients whose identity is in one of these namespaces.
   */
  namespaces: string[];
  /**
   * Client addresses in CIDR form ("198.18.0.0/15", "::1/128"); these admit unauthenticated
   * clients too.
   */
  networks: string[];
  /**
   * Any client at all, with or without an identity.
   */
  unauthenticated: boolean;
  /**
   * What: empty means the whole server; else only requests matching one of these routes.
   */
  routes: _trellis_policy_v1_HttpRoute__Output[];
}
