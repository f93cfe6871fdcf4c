import type * as grpc from '@grpc/grpc-js';
import type { MessageTypeDefinition } from '@grpc/proto-loader';

import type {
  Extension as _trellis_route_v1_Extension,
  Extension__Output as _trellis_route_v1_Extension__Output,
} from './trellis/route/v1/Extension.ts';
import type {
  Route as _trellis_route_v1_Route,
  Route__Output as _trellis_route_v1_Route__Output,
} from './trellis/route/v1/Route.ts';
import type {
  RouteSet as _trellis_route_v1_RouteSet,
  RouteSet__Output as _trellis_route_v1_RouteSet__Output,
} from './trellis/route/v1/RouteSet.ts';
import type {
  RouteTarget as _trellis_route_v1_RouteTarget,
  RouteTarget__Output as _trellis_route_v1_RouteTarget__Output,
} from './trellis/route/v1/RouteTarget.ts';
import type {
  RoutesClient as _trellis_route_v1_RoutesClient,
  RoutesDefinition as _trellis_route_v1_RoutesDefinition,
} from './trellis/route/v1/Routes.ts';

type SubtypeConstructor<Constructor extends new (...args: any) => any, Subtype> = {
  new (...args: ConstructorParameters<Constructor>): Subtype;
};

export interface ProtoGrpcType {
  trellis: {
    route: {
      v1: {
        Extension: MessageTypeDefinition<_trellis_route_v1_Extension, _trellis_route_v1_Extension__Output>;
        Route: MessageTypeDefinition<_trellis_route_v1_Route, _trellis_route_v1_Route__Output>;
        RouteSet: MessageTypeDefinition<_trellis_route_v1_RouteSet, _trellis_route_v1_RouteSet__Output>;
        RouteTarget: MessageTypeDefinition<
          _trellis_route_v1_RouteTarget,
          _trellis_route_v1_RouteTarget__Output
        >;
        Routes: SubtypeConstructor<typeof grpc.Client, _trellis_route_v1_RoutesClient> & {
          service: _trellis_route_v1_RoutesDefinition;
        };
      };
    };
  };
}
