// The route source of one machine: HTTPRoutes and GRPCRoutes from `<state>/routes/`
// (state-files.ts) and the Services of `<state>/services/` they name (services.ts), kept up to
// date by the shared FolderSnapshot (a recursive fs.watch, debounced, with a periodic full rescan
// for the events fs.watch misses); listeners are told only when the routes or the Services' ports
// or their traffic annotations actually changed. On Kubernetes the same RouteSnapshot comes from
// the API server (kubernetes.ts).
import type { Logger } from '../../core/log.ts';
import { FolderSnapshot } from '../discovery/folder-snapshot.ts';
import { readLocalState, type StateFileCache } from '../discovery/local-state.ts';
import type { RouteSnapshot } from './route-set.ts';
import { localServiceAnnotations, localServiceIndex } from './services.ts';
import { readRouteState, routesDir, type RouteFileCache } from './state-files.ts';

export interface RouteSource {
  /** Resolves once the first full read is done. */
  ready(): Promise<void>;
  snapshot(): RouteSnapshot;
  /** Called after the snapshot changed. Returns an unsubscribe. */
  onChange(listener: () => void): () => void;
  close(): Promise<void>;
}

export interface LocalRouteSourceOptions {
  readonly root: string;
  readonly log: Logger;
  /** How long to wait after a file event for more before rescanning. Default 50 ms. */
  readonly debounceMs?: number;
  /** The fallback full rescan. Default 2000 ms. */
  readonly rescanIntervalMs?: number;
}

export class LocalRouteSource implements RouteSource {
  readonly #folder: FolderSnapshot<RouteSnapshot>;

  constructor(options: LocalRouteSourceOptions) {
    const log = options.log.child({ component: 'routes-local' });
    const routeCache: RouteFileCache = new Map();
    const stateCache: StateFileCache = new Map();
    this.#folder = new FolderSnapshot<RouteSnapshot>({
      ...options,
      log,
      folder: routesDir(options.root),
      initial: {
        routes: [],
        services: new Map(),
        serviceAnnotations: new Map(),
        faults: [],
        backendPolicies: [],
      },
      read: async () => {
        const state = await readLocalState(options.root, stateCache, log);
        return {
          ...(await readRouteState(options.root, routeCache, log)),
          services: localServiceIndex(state),
          serviceAnnotations: localServiceAnnotations(state),
        };
      },
      key: (snapshot) => [
        snapshot.routes,
        [...snapshot.services],
        [...snapshot.serviceAnnotations],
        snapshot.faults ?? [],
        snapshot.backendPolicies ?? [],
      ],
    });
  }

  ready(): Promise<void> {
    return this.#folder.ready();
  }

  snapshot(): RouteSnapshot {
    return this.#folder.value;
  }

  onChange(listener: () => void): () => void {
    return this.#folder.onChange(listener);
  }

  /** Scans the folder now (after an in-progress scan, if any) and tells listeners of changes. */
  rescan(): Promise<void> {
    return this.#folder.rescan();
  }

  close(): Promise<void> {
    return this.#folder.close();
  }
}
