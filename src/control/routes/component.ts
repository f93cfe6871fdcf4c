// The routes part of the control plane (a ControlPlaneComponent of src/control/server.ts):
//
//   gRPC  trellis.route.v1.Routes/Watch   the RouteSet of one Service port for one client
//         namespace at once (after the source's first read), then again after every change that
//         alters it (route-set.ts)
//
// Each stream recomputes its set when the source reports a change and sends it only when it
// differs from what the stream sent last, so unrelated changes cost one comparison.
import * as grpc from '@grpc/grpc-js';
import { loadRouteApi, type ApiRouteSet, type ApiRouteTargetOutput } from '../../api/load.ts';
import type { Logger } from '../../core/log.ts';
import type { ControlPlaneComponent } from '../server.ts';
import { buildRouteSet } from './route-set.ts';
import { LocalRouteSource, type RouteSource } from './source.ts';

export interface RouteComponent extends ControlPlaneComponent {
  readonly source: RouteSource;
  /** Open Watch streams (tests check they are released). */
  readonly openStreams: number;
}

/** The routes component over the state folder `root` (`trellis up`). */
export function localRouteComponent(root: string, log: Logger): RouteComponent {
  return createRouteComponent(new LocalRouteSource({ root, log }), log);
}

type WatchCall = grpc.ServerWritableStream<ApiRouteTargetOutput, ApiRouteSet>;

export function createRouteComponent(source: RouteSource, parentLog: Logger): RouteComponent {
  const log = parentLog.child({ component: 'route-api' });
  const streams = new Set<WatchCall>();
  let closed = false;

  const watch = (call: WatchCall): void => {
    const target = { ...call.request };
    if (target.namespace === '' || target.service === '' || target.port < 1 || target.port > 65535) {
      call.emit('error', {
        code: grpc.status.INVALID_ARGUMENT,
        details: 'RouteTarget needs a namespace, a service and a port 1..65535',
      });
      return;
    }
    streams.add(call);
    let lastSent = '';
    let unsubscribe: () => void = () => {};
    const send = (): void => {
      if (!streams.has(call)) return;
      const set = buildRouteSet(source.snapshot(), target);
      const key = JSON.stringify(set);
      if (key === lastSent) return;
      lastSent = key;
      call.write(set);
    };
    const end = (): void => {
      streams.delete(call);
      unsubscribe();
    };
    call.on('cancelled', end);
    call.on('close', end);
    call.on('error', end);
    source.ready().then(
      () => {
        if (!streams.has(call)) return;
        unsubscribe = source.onChange(send);
        send();
      },
      (error: unknown) => {
        log.error('route source failed to start', { error });
        end();
        call.emit('error', { code: grpc.status.UNAVAILABLE, details: 'the route source is unavailable' });
      },
    );
  };

  return {
    source,
    get openStreams() {
      return streams.size;
    },
    addGrpcServices(server: grpc.Server) {
      server.addService(loadRouteApi().Routes.service, { Watch: watch });
    },
    async close() {
      if (closed) return;
      closed = true;
      for (const call of Array.from(streams)) {
        streams.delete(call);
        // Proxies keep their last route set and watch again (maybe a restarted control plane).
        if (!call.cancelled)
          call.emit('error', {
            code: grpc.status.UNAVAILABLE,
            details: 'the route service is shutting down',
          });
      }
      await source.close();
    },
  };
}
