// A Kubernetes informer that keeps going (used by the discovery watcher, kubernetes.ts, and the
// policy source, ../policy/kubernetes.ts): the
// official client's ListWatch, asking for watch bookmarks, restarted after failures with one
// backoff of its own, and telling when its first list has landed.
import {
  KubeConfig,
  ListWatch,
  Watch,
  type KubernetesListObject,
  type KubernetesObject,
} from '@kubernetes/client-node';
import { TrellisError } from '../../core/errors.ts';

/**
 * The client's Watch, asking for bookmarks so that a resumed watch rarely meets a 410, and telling
 * `onEvent` about every event the server streams (a bookmark too; not an ERROR such as 410 Gone).
 */
class BookmarkingWatch extends Watch {
  readonly #onEvent: () => void;

  constructor(kubeConfig: KubeConfig, onEvent: () => void) {
    super(kubeConfig);
    this.#onEvent = onEvent;
  }

  override watch(...[path, query, callback, done]: Parameters<Watch['watch']>): ReturnType<Watch['watch']> {
    const onLine: typeof callback = (phase, object, raw) => {
      if (phase !== 'ERROR') this.#onEvent();
      callback(phase, object, raw);
    };
    return super.watch(path, { ...query, allowWatchBookmarks: true }, onLine, done);
  }
}

const MAX_RETRY_DELAY_MS = 30_000;

/**
 * One ListWatch that starts again after failures, and knows when its first list has landed.
 *
 * Every wait before watching again (a restart after a failure, and the client's own reconnect
 * delay after a watch that ended or answered 410 Gone) follows one backoff: `retryDelayMs`,
 * doubling while nothing succeeds, back to `retryDelayMs` as soon as a list succeeds or a watch
 * streams an event. The client's own delay (1 s doubling to 30 s) resets only on a watch event, so
 * a 410 (an ERROR event) followed by a successful relist counts as a failure there: a resource
 * whose history is compacted again while the watcher waits would stay unwatched for 2, 4, 8, 16 s
 * and more, its changes unseen though the API server answers every request.
 */
export class ResourceInformer<T extends KubernetesObject> {
  readonly cache: ListWatch<T>;
  readonly synced: Promise<void>;
  #markSynced: () => void = () => {};
  #stopped = false;
  #retryDelayMs: number;
  #retryTimer: NodeJS.Timeout | null = null;
  readonly #delays = new Set<NodeJS.Timeout>();
  readonly #baseRetryDelayMs: number;
  readonly #resource: string;
  readonly #onError: (error: TrellisError) => void;

  constructor(
    kubeConfig: KubeConfig,
    path: string,
    list: () => Promise<KubernetesListObject<T>>,
    /** Called for every object added, updated ('change') or deleted ('delete'). */
    onChange: (object: T, kind: 'change' | 'delete') => void,
    options: { retryDelayMs: number; onError: (error: TrellisError) => void },
  ) {
    this.#resource = path;
    this.#baseRetryDelayMs = options.retryDelayMs;
    this.#retryDelayMs = options.retryDelayMs;
    this.#onError = options.onError;
    this.synced = new Promise((resolve) => (this.#markSynced = resolve));
    const succeeded = (): void => {
      this.#retryDelayMs = this.#baseRetryDelayMs;
    };
    const listAndReset = async (): Promise<KubernetesListObject<T>> => {
      const result = await list();
      succeeded();
      return result;
    };
    // The client asks for its own reconnect delay; it waits ours instead. It also does not look at
    // `stop()` after the wait: a delay cut short by stop never resolves, so a stopped informer
    // never watches again.
    const delayFn = (): Promise<void> =>
      new Promise((resolve) => {
        if (this.#stopped) return;
        const timer = setTimeout(() => {
          this.#delays.delete(timer);
          resolve();
        }, this.#nextRetryDelayMs());
        this.#delays.add(timer);
      });
    this.cache = new ListWatch(
      path,
      new BookmarkingWatch(kubeConfig, succeeded),
      listAndReset,
      false,
      undefined,
      undefined,
      { delayFn },
    );
    this.cache.on('add', (object: T) => onChange(object, 'change'));
    this.cache.on('update', (object: T) => onChange(object, 'change'));
    this.cache.on('delete', (object: T) => onChange(object, 'delete'));
    this.cache.on('error', (error: unknown) => this.#failed(error));
  }

  async start(): Promise<void> {
    if (this.#stopped) return;
    await this.cache.start();
    if (this.#stopped) return;
    if (this.cache.latestResourceVersion() !== '') this.#markSynced();
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    if (this.#retryTimer) clearTimeout(this.#retryTimer);
    for (const timer of this.#delays) clearTimeout(timer);
    this.#delays.clear();
    await this.cache.stop();
  }

  #nextRetryDelayMs(): number {
    const delay = this.#retryDelayMs;
    this.#retryDelayMs = Math.min(delay * 2, MAX_RETRY_DELAY_MS);
    return delay;
  }

  // ListWatch restarts by itself after a watch ends cleanly or with 410 Gone, but stops on any
  // other failure (refused connection, reset socket, failed list): start it again after a delay.
  #failed(error: unknown): void {
    if (this.#stopped) return;
    this.#onError(
      new TrellisError('TRELLIS_ERR_KUBE_WATCH', `watching ${this.#resource} failed; retrying`, {
        cause: error,
      }),
    );
    if (this.#retryTimer) return;
    this.#retryTimer = setTimeout(() => {
      this.#retryTimer = null;
      void this.start();
    }, this.#nextRetryDelayMs());
  }
}
