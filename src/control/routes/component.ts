// The routes part of the control plane (a ControlPlaneComponent of src/control/server.ts):
//
//   gRPC  trellis.route.v1.Routes/Watch   the RouteSet of one Service port for one client
//         namespace at once (after the source's first read), then again after every change that
//         alters it (route-set.ts)
//   HTTP  GET /api/routes?kind=HTTPRoute&namespace=NS&name=NAME   the routes as objects with their
//         status (objects.ts), for `trellis get`; every filter optional
//   HTTP  GET /api/workload-routes?namespace=NS&workload=NAME   the Services the workload backs,
//         each with the routes `trellis routes` shows, and the Services it calls with the routes
//         that apply to its calls (workload-routes.ts), for the dashboard's workload page; 400
//         without both
//
// Streams are served by the shared WatchStreams (src/control/watch-streams.ts): a set is sent
// again only when it differs from the last one sent. A set that would be too large leaves its
// newest routes out (route-bound.ts); each distinct choice is logged once, and the routes' status
// says it.
import type { IncomingMessage, ServerResponse } from 'node:http';
import * as grpc from '@grpc/grpc-js';
import { loadRouteApi, type ApiRouteSet, type ApiRouteTargetOutput } from '../../api/load.ts';
import type { Logger } from '../../core/log.ts';
import type { Edge } from '../metrics/edges.ts';
import type { ControlPlaneComponent } from '../server.ts';
import type { ServiceView } from '../server.ts';
import { WatchStreams, withSharedEncoding } from '../watch-streams.ts';
import type { WatchLimits } from '../watch-limits.ts';
import { routeObjects } from './objects.ts';
import { routeKey } from './route-bound.ts';
import { boundedRouteSet } from './route-set.ts';
import { LocalRouteSource, type RouteSource } from './source.ts';
import { workloadRoutesView } from './workload-routes.ts';

/** The Services with their endpoints (the control plane's catalog), to tell which a workload backs. */
export type ListServices = () => Promise<readonly ServiceView[]>;
/** Who calls whom (the control plane's edges), to tell which Services a workload calls. */
export type ListEdges = () => readonly Edge[];

export interface RouteComponent extends ControlPlaneComponent {
  readonly source: RouteSource;
  /** Open Watch streams (tests check they are released). */
  readonly openStreams: number;
}

/** The routes component over the state folder `root` (`trellis up`). */
export function localRouteComponent(
  root: string,
  log: Logger,
  listServices?: ListServices,
  listEdges?: ListEdges,
): RouteComponent {
  return createRouteComponent(new LocalRouteSource({ root, log }), log, listServices, listEdges);
}

type WatchCall = grpc.ServerWritableStream<ApiRouteTargetOutput, ApiRouteSet>;

export function createRouteComponent(
  source: RouteSource,
  parentLog: Logger,
  listServices: ListServices = async () => [],
  listEdges: ListEdges = () => [],
): RouteComponent {
  const log = parentLog.child({ component: 'route-api' });
  const streams = new WatchStreams<ApiRouteSet>(source, log, 'route');
  let closed = false;
  const logged = new Set<string>(); // the sets over their bound already logged (bounded below)

  const build = (target: ApiRouteTargetOutput): ApiRouteSet => {
    const { set, unsent } = boundedRouteSet(source.snapshot(), target);
    if (unsent.length === 0) return set;
    const routes = unsent.map((u) => routeKey(u.route));
    const line = `${target.namespace}/${target.service}:${target.port} ${routes.join(' ')}`;
    if (!logged.has(line)) {
      if (logged.size >= 1024) logged.clear();
      logged.add(line);
      log.warn('route set over its bound: routes left out (their status says so)', {
        namespace: target.namespace,
        service: target.service,
        port: target.port,
        routes,
        sent: set.routes?.length ?? 0,
      });
    }
    return set;
  };

  const watch = (call: WatchCall): void => {
    const target = { ...call.request };
    if (target.namespace === '' || target.service === '' || target.port < 1 || target.port > 65535) {
      call.emit('error', {
        code: grpc.status.INVALID_ARGUMENT,
        details: 'RouteTarget needs a namespace, a service and a port 1..65535',
      });
      return;
    }
    // Every stream of one target gets the same set: built once a change for all of them.
    streams.serve(call, () => build(target), JSON.stringify(target));
  };

  return {
    source,
    get openStreams() {
      return streams.size;
    },
    addGrpcServices(server: grpc.Server, limits?: WatchLimits) {
      if (limits !== undefined) streams.limitBy(limits);
      server.addService(withSharedEncoding(loadRouteApi().Routes.service), { Watch: watch });
    },
    // The source's own metrics, if it has any (the Kubernetes one counts its status writes).
    metrics: () => (source as { metrics?: () => string }).metrics?.() ?? '',
    async handleHttp(req: IncomingMessage, res: ServerResponse, path: string): Promise<boolean> {
      if (path === '/api/workload-routes')
        return serveWorkloadRoutes(req, res, source, listServices, listEdges);
      if (path !== '/api/routes') return false;
      return serveRouteObjects(req, res, source);
    },
    async close() {
      if (closed) return;
      closed = true;
      streams.closeAll();
      await source.close();
    },
  };
}

/** GET /api/routes: the routes as objects with their status; 405 for other methods. */
async function serveRouteObjects(
  req: IncomingMessage,
  res: ServerResponse,
  source: RouteSource,
): Promise<true> {
  const send = jsonSender(res);
  if (refusedAsNotRead(req, res, send)) return true;
  const query = new URL(req.url ?? '/', 'http://control').searchParams;
  const filter = (key: string): string | undefined => query.get(key) || undefined;
  await source.ready();
  send(
    200,
    routeObjects(source.snapshot(), {
      kind: filter('kind'),
      namespace: filter('namespace'),
      name: filter('name'),
    }),
  );
  return true;
}

/** GET /api/workload-routes?namespace=NS&workload=NAME (see workload-routes.ts). */
async function serveWorkloadRoutes(
  req: IncomingMessage,
  res: ServerResponse,
  source: RouteSource,
  listServices: ListServices,
  listEdges: ListEdges,
): Promise<true> {
  const send = jsonSender(res);
  if (refusedAsNotRead(req, res, send)) return true;
  const query = new URL(req.url ?? '/', 'http://control').searchParams;
  const namespace = query.get('namespace') ?? '';
  const workload = query.get('workload') ?? '';
  if (namespace === '' || workload === '') {
    send(400, { error: 'expected ?namespace=NS&workload=NAME' });
    return true;
  }
  await source.ready();
  send(200, workloadRoutesView(source.snapshot(), await listServices(), namespace, workload, listEdges()));
  return true;
}

function jsonSender(res: ServerResponse): (status: number, body: unknown) => void {
  return (status, body) => {
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(JSON.stringify(body) + '\n');
  };
}

/** 405 for a method other than GET and HEAD (true: answered). */
function refusedAsNotRead(
  req: IncomingMessage,
  res: ServerResponse,
  send: (status: number, body: unknown) => void,
): boolean {
  if (req.method === 'GET' || req.method === 'HEAD') return false;
  res.setHeader('allow', 'GET, HEAD');
  send(405, { error: 'method not allowed' });
  return true;
}
