// The route source of one machine: HTTPRoutes and GRPCRoutes from `<state>/routes/`
// (state-files.ts) and the Services of `<state>/services/` they name (services.ts). Changes are
// seen through the shared FolderScanner (a recursive fs.watch, debounced, with a periodic full
// rescan for the events fs.watch misses); listeners are told only when the routes or the
// Services' ports actually changed. On Kubernetes the same RouteSnapshot would come from the
// Gateway API CRDs (not written yet).
import { mkdir } from 'node:fs/promises';
import type { Logger } from '../../core/log.ts';
import { FolderScanner } from '../discovery/folder-scanner.ts';
import { readLocalState, type StateFileCache } from '../discovery/local-state.ts';
import { ChangeListeners } from '../policy/source.ts';
import type { RouteSnapshot } from './route-set.ts';
import { localServiceIndex } from './services.ts';
import { readRouteFolder, routesDir, type RouteFileCache } from './state-files.ts';

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
  readonly #root: string;
  readonly #log: Logger;
  readonly #scanner: FolderScanner;
  readonly #routeCache: RouteFileCache = new Map();
  readonly #stateCache: StateFileCache = new Map();
  readonly #listeners: ChangeListeners;
  readonly #ready: Promise<void>;
  #snapshot: RouteSnapshot = { routes: [], services: new Map() };
  #key = '';
  #closed = false;

  constructor(options: LocalRouteSourceOptions) {
    this.#root = options.root;
    this.#log = options.log.child({ component: 'routes-local' });
    this.#listeners = new ChangeListeners((error) => this.#log.error('route listener threw', { error }));
    this.#scanner = new FolderScanner({
      root: this.#root,
      debounceMs: options.debounceMs ?? 50,
      rescanIntervalMs: options.rescanIntervalMs ?? 2000,
      log: this.#log,
      pass: () => this.#scanPass(),
    });
    this.#ready = mkdir(routesDir(this.#root), { recursive: true }).then(() => this.#scanner.start());
    this.#ready.catch(() => {});
  }

  ready(): Promise<void> {
    return this.#ready;
  }

  snapshot(): RouteSnapshot {
    return this.#snapshot;
  }

  onChange(listener: () => void): () => void {
    return this.#listeners.add(listener);
  }

  /** Scans the folder now (after an in-progress scan, if any) and tells listeners of changes. */
  rescan(): Promise<void> {
    return this.#scanner.rescan();
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#listeners.clear();
    await this.#scanner.close();
  }

  async #scanPass(): Promise<void> {
    const routes = await readRouteFolder(this.#root, this.#routeCache, this.#log);
    const services = localServiceIndex(await readLocalState(this.#root, this.#stateCache, this.#log));
    if (this.#closed) return;
    const key = JSON.stringify([routes, [...services]]);
    this.#snapshot = { routes, services };
    if (key !== this.#key) {
      this.#key = key;
      this.#listeners.notify();
    }
  }
}
