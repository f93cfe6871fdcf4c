// The control plane's Routes API served on loopback for tests: a gRPC server bound to a free
// loopback port, and the route component (src/control/routes/component.ts) over a state folder,
// stopped when the test ends.
import type { TestContext } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { silentLogger } from '../../src/core/log.ts';
import { createRouteComponent } from '../../src/control/routes/component.ts';
import { LocalRouteSource } from '../../src/control/routes/source.ts';

/** Binds `server` to a free loopback port without TLS; the port. */
export function bindLoopback(server: grpc.Server): Promise<number> {
  return new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) =>
      e ? reject(e) : resolve(p),
    ),
  );
}

/** The route component over the state folder `root`, served on loopback until `t` ends. */
export async function serveRouteFolder(t: TestContext, root: string) {
  const source = new LocalRouteSource({ root, log: silentLogger, debounceMs: 10, rescanIntervalMs: 200 });
  const component = createRouteComponent(source, silentLogger);
  const server = new grpc.Server();
  component.addGrpcServices!(server);
  const port = await bindLoopback(server);
  t.after(async () => {
    await component.close?.();
    server.forceShutdown();
  });
  return { source, component, port };
}
