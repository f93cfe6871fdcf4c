// Original file: src/api/route.proto

import type {
  Route as _trellis_route_v1_Route,
  Route__Output as _trellis_route_v1_Route__Output,
} from '../../../trellis/route/v1/Route.ts';
import type {
  Extension as _trellis_route_v1_Extension,
  Extension__Output as _trellis_route_v1_Extension__Output,
} from '../../../trellis/route/v1/Extension.ts';

export interface RouteSet {
  /**
   * The routes that apply, ordered by creation time then namespace/name (the matcher sorts again).
   * At most ROUTE_SET_ROUTE_BYTES of them (src/api/route-set-bound.ts), the oldest first: a route
   * that does not fit is left out, and its status says so (RouteSetTooLarge).
   */
  routes?: _trellis_route_v1_Route[];
  /**
   * "namespace/name:port" of every backend or mirror target of these routes that does not resolve
   * (no such Service or port, or not permitted): requests picked for one get 500.
   */
  unresolvedBackends?: string[];
  /**
   * The Service's traffic annotations (retry.trellis.io/*, timeout.trellis.io/*,
   * balancer.trellis.io/*; src/core/routes/service-annotations.ts), raw: the proxy parses them
   * with the same code `trellis apply` checks them with. They apply with or without routes.
   */
  serviceAnnotations?: { [key: string]: string };
  /**
   * The Trellis resources the routes' ExtensionRef filters name and the control plane knows (today
   * HTTPFault, traffic.trellis.dev: fault injection, src/core/routes/fault.ts). An ExtensionRef
   * naming none of these makes its rule answer 500.
   */
  extensions?: _trellis_route_v1_Extension[];
}

export interface RouteSet__Output {
  /**
   * The routes that apply, ordered by creation time then namespace/name (the matcher sorts again).
   * At most ROUTE_SET_ROUTE_BYTES of them (src/api/route-set-bound.ts), the oldest first: a route
   * that does not fit is left out, and its status says so (RouteSetTooLarge).
   */
  routes: _trellis_route_v1_Route__Output[];
  /**
   * "namespace/name:port" of every backend or mirror target of these routes that does not resolve
   * (no such Service or port, or not permitted): requests picked for one get 500.
   */
  unresolvedBackends: string[];
  /**
   * The Service's traffic annotations (retry.trellis.io/*, timeout.trellis.io/*,
   * balancer.trellis.io/*; src/core/routes/service-annotations.ts), raw: the proxy parses them
   * with the same code `trellis apply` checks them with. They apply with or without routes.
   */
  serviceAnnotations: { [key: string]: string };
  /**
   * The Trellis resources the routes' ExtensionRef filters name and the control plane knows (today
   * HTTPFault, traffic.trellis.dev: fault injection, src/core/routes/fault.ts). An ExtensionRef
   * naming none of these makes its rule answer 500.
   */
  extensions: _trellis_route_v1_Extension__Output[];
}
