// One Routes.Watch stream for one Service port the app addresses, kept open: each RouteSet is
// compiled (route-table.ts) and handed over as the matcher's RouteTable; a set that does not
// compile is logged (once per distinct problem) and the last good table stays. When the stream fails or ends the watch starts again
// after an exponential backoff with jitter (the caller keeps its table meanwhile, so a
// control-plane restart changes nothing for traffic), at the address the control plane is at now
// (src/proxy/resolve/control-plane-address.ts). The loop, its backoff and its log lines are the
// shared watch-stream.ts: a failure is a warning once, with its reason (a message over the
// receive limit is RESOURCE_EXHAUSTED), and a debug line per retry after it. A RouteSet larger than
// ROUTE_SET_MAX_MESSAGE_BYTES (src/api/route-set-bound.ts) is refused by gRPC; the control plane
// keeps its sets below that. Loaded lazily, so a proxy that never routes never loads gRPC.
//
// For the data path: `watchRoutes({ ..., onTable })` per (client namespace, Service, port); then
// per request `matchRoute(table, request)` (src/core/routes/matcher.ts), `pickBackend` for the
// matched rule's backends (backends.ts) and the filters of filters.ts.
import * as grpc from '@grpc/grpc-js';
import {
  reconnectBackoffOptions,
  Routes,
  type ApiRouteSetOutput,
  type RoutesClient,
} from '../../api/client.ts';
import { ROUTE_SET_MAX_MESSAGE_BYTES } from '../../api/route-set-bound.ts';
import { backoffSettings, WATCH_BACKOFF } from '../../core/backoff.ts';
import type { Timers } from '../../core/clock.ts';
import type { Logger } from '../../core/log.ts';
import type { Random } from '../../core/random.ts';
import { type ControlPlaneLocator, locateControlPlane } from '../resolve/control-plane-address.ts';
import { ControlPlaneClient } from '../resolve/control-plane-client.ts';
import { watchStream } from '../resolve/watch-stream.ts';
import { compileRouteSet, type PolicedRouteTable, type ValidatedRoutes } from './route-table.ts';

export interface RouteWatchOptions {
  /** The control plane's gRPC address, "host:port". */
  readonly address: string;
  /** Where the control plane is now (default: the process's, see control-plane-address.ts). */
  readonly locator?: ControlPlaneLocator;
  /** The namespace of this proxy's workload: its consumer routes apply. */
  readonly clientNamespace: string;
  /** The Service port the app addressed. */
  readonly namespace: string;
  readonly service: string;
  readonly port: number;
  /** Re-watch delays: from initialMs, doubling up to maxMs, each drawn in [delay/2, delay]. */
  readonly backoff?: { readonly initialMs?: number; readonly maxMs?: number };
  readonly timers?: Timers;
  readonly random?: Random;
  readonly log: Logger;
  /** A new table (one with no routes, where matchRoute gives null, when none applies). Not called for a set that does not compile. */
  readonly onTable: (table: PolicedRouteTable) => void;
  /** A set that does not compile, with the reason (the last good table stays). */
  readonly onRejected?: (problem: string) => void;
  /** The stream failed or ended (it is opened again after a backoff); the table stays. */
  readonly onEnd?: () => void;
}

export interface RouteWatch {
  close(): void;
}

export function watchRoutes(options: RouteWatchOptions): RouteWatch {
  const backoff = backoffSettings(options.backoff, WATCH_BACKOFF);
  const client = new ControlPlaneClient<RoutesClient>(
    options.locator ?? locateControlPlane(options.address),
    (address) =>
      new Routes(address, grpc.credentials.createInsecure(), {
        ...reconnectBackoffOptions(backoff),
        'grpc.max_receive_message_length': ROUTE_SET_MAX_MESSAGE_BYTES,
      }),
  );
  const target = {
    clientNamespace: options.clientNamespace,
    namespace: options.namespace,
    service: options.service,
    port: options.port,
  };
  let lastProblem = '';
  let validated: ValidatedRoutes = new Map(); // the routes of the last good set, for the next
  const onMessage = (set: ApiRouteSetOutput): void => {
    const compiled = compileRouteSet(set, validated);
    if (compiled.ok) {
      lastProblem = '';
      validated = compiled.validated;
      options.onTable(compiled.table);
      return;
    }
    if (compiled.problem !== lastProblem) {
      lastProblem = compiled.problem;
      options.log.warn('route set refused; the last good routes stay', {
        ...target,
        problem: compiled.problem,
      });
    }
    options.onRejected?.(compiled.problem);
  };
  const watch = watchStream<ApiRouteSetOutput>({
    name: 'route watch',
    client,
    open: () => client.get().Watch(target),
    onMessage,
    keeps: 'the last routes',
    onEnd: () => options.onEnd?.(),
    fields: target,
    backoff,
    timers: options.timers,
    random: options.random,
    log: options.log,
  });
  return {
    close() {
      watch.close();
      client.close();
    },
  };
}
