// A control plane for unit tests of its listeners and bounds: `startControlPlane` over a fresh
// state folder (a LocalWatcher and the local catalog), gRPC and HTTP on free loopback ports, the
// folder removed and the plane closed when the test ends. `extra` adds or overrides options, given
// the folder (for components that read it).
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LocalWatcher } from '../../src/control/discovery/local.ts';
import {
  localCatalog,
  startControlPlane,
  type ControlPlane,
  type ControlPlaneOptions,
} from '../../src/control/server.ts';
import { removeTempDir } from './temp-dir.ts';

export interface StateControlPlane {
  readonly plane: ControlPlane;
  readonly root: string;
  readonly grpcPort: number;
  readonly httpPort: number;
}

const portOf = (address: string): number => Number(address.slice(address.lastIndexOf(':') + 1));

export async function startStateControlPlane(
  t: { after(fn: () => unknown): void },
  extra: (root: string) => Partial<ControlPlaneOptions> | Promise<Partial<ControlPlaneOptions>> = () => ({}),
): Promise<StateControlPlane> {
  const root = await mkdtemp(join(tmpdir(), 'trellis-control-'));
  t.after(() => removeTempDir(root));
  const plane = await startControlPlane({
    watcher: new LocalWatcher({ root }),
    catalog: localCatalog(root),
    grpcListen: '127.0.0.1:0',
    httpListen: '127.0.0.1:0',
    components: [],
    ...(await extra(root)),
  });
  t.after(() => plane.close());
  return { plane, root, grpcPort: portOf(plane.grpc), httpPort: portOf(plane.http) };
}
