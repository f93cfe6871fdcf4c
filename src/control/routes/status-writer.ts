// Writes route (and XBackendTrafficPolicy) status back to the Kubernetes API (the `/status` subresource, a JSON merge patch)
// for the route source of kubernetes.ts: after every change it is told of, each route whose
// status differs from what it should say (kubernetes-status.ts) gets one patch.
//
// Bounds, so that a route never costs more than one write per change of what it should say:
//   - at most one patch per route in flight; a route changed meanwhile is looked at again after it
//   - after a patch (answered, or refused with 409 Conflict or 404), the route is not patched again until
//     the watch brings a newer resourceVersion of it (the copy in hand is stale)
//   - a failed patch is retried after retryDelayMs, doubling to 30 s, counted and logged
//     (rate-limited by the backoff itself)
//
// With several replicas only the holder of the status lease writes (../leader-lease.ts): pause()
// when it stops holding it sends nothing more (a patch already sent still lands) and forgets what
// it wrote, so that after resume() the next sync looks at every route afresh.
import type { Logger } from '../../core/log.ts';
import { statusPatch, type ParentEntry, type RouteObject, type StatusShape } from './kubernetes-status.ts';

export interface StatusTarget {
  /** "uid" or "kind/namespace/name": what identifies the route across versions. */
  readonly key: string;
  readonly kind: string;
  readonly namespace: string;
  readonly name: string;
  readonly object: RouteObject;
  readonly desired: readonly ParentEntry[];
  /** A route's status.parents (absent) or a policy's status.ancestors. */
  readonly shape?: StatusShape;
}

export interface StatusWriterOptions {
  /** Sends a merge patch to the route's status subresource. */
  readonly patch: (target: StatusTarget, body: Record<string, unknown>) => Promise<void>;
  readonly log: Logger;
  readonly retryDelayMs?: number;
  /** The time conditions are stamped with (tests fix it). */
  readonly now?: () => Date;
}

const MAX_RETRY_DELAY_MS = 30_000;

export class RouteStatusWriter {
  readonly #options: StatusWriterOptions;
  /** Routes with a patch in flight. */
  readonly #inFlight = new Set<string>();
  /** Routes looked at while their patch was in flight: the latest target to look at again. */
  readonly #pending = new Map<string, StatusTarget>();
  /** The resourceVersion each route was last patched from: no patch again until it moves on. */
  readonly #patchedFrom = new Map<string, string>();
  #retryDelayMs: number;
  #retryTimer: NodeJS.Timeout | null = null;
  #closed = false;
  #paused = false;
  /** Patches sent, by result (for the metrics and the tests). */
  readonly counts = { written: 0, conflicts: 0, failed: 0 };

  constructor(options: StatusWriterOptions) {
    this.#options = options;
    this.#retryDelayMs = options.retryDelayMs ?? 1000;
  }

  /**
   * Looks at every route now known (`targets`) and patches those that need it; forgets the routes
   * that are gone. `retry` is called after a failed patch's backoff, to look again.
   */
  sync(targets: readonly StatusTarget[], retry: () => void): void {
    if (this.#closed || this.#paused) return;
    const live = new Set(targets.map((t) => t.key));
    for (const key of this.#patchedFrom.keys()) if (!live.has(key)) this.#patchedFrom.delete(key);
    for (const target of targets) this.#consider(target, retry);
  }

  /** Sends nothing until resume(); what was written is forgotten (another replica writes meanwhile). */
  pause(): void {
    this.#paused = true;
    if (this.#retryTimer !== null) clearTimeout(this.#retryTimer);
    this.#retryTimer = null;
    this.#retryDelayMs = this.#options.retryDelayMs ?? 1000;
    this.#pending.clear();
    this.#patchedFrom.clear();
  }

  /** Writes again from the next sync on, which looks at every route. */
  resume(): void {
    this.#paused = false;
  }

  close(): void {
    this.#closed = true;
    if (this.#retryTimer !== null) clearTimeout(this.#retryTimer);
    this.#pending.clear();
  }

  #consider(target: StatusTarget, retry: () => void): void {
    if (this.#paused) return;
    if (this.#inFlight.has(target.key)) {
      this.#pending.set(target.key, target);
      return;
    }
    const version = target.object.metadata?.resourceVersion ?? '';
    if (this.#patchedFrom.get(target.key) === version) return;
    const now = (this.#options.now?.() ?? new Date()).toISOString().replace(/\.\d{3}Z$/, 'Z');
    const body = statusPatch(target.object, target.desired, now, target.shape);
    if (body === null) return;
    this.#inFlight.add(target.key);
    this.#patchedFrom.set(target.key, version);
    this.#options.patch(target, body).then(
      () => {
        this.counts.written++;
        this.#retryDelayMs = this.#options.retryDelayMs ?? 1000;
        this.#done(target.key, retry);
      },
      (error: unknown) => {
        const code = (error as { code?: unknown }).code;
        if (code === 409 || code === 404) {
          // Someone wrote in between, or the route is gone: the watch brings the newer object (or
          // its deletion), looked at then.
          this.counts.conflicts++;
        } else {
          this.counts.failed++;
          this.#patchedFrom.delete(target.key);
          this.#options.log.warn('writing route status failed; retrying', {
            route: `${target.kind} ${target.namespace}/${target.name}`,
            error: (error as Error).message,
            retryInMs: this.#retryDelayMs,
          });
          this.#scheduleRetry(retry);
        }
        this.#done(target.key, retry);
      },
    );
  }

  #done(key: string, retry: () => void): void {
    this.#inFlight.delete(key);
    const next = this.#pending.get(key);
    this.#pending.delete(key);
    if (next !== undefined && !this.#closed) this.#consider(next, retry);
  }

  #scheduleRetry(retry: () => void): void {
    if (this.#retryTimer !== null || this.#closed || this.#paused) return;
    const delay = this.#retryDelayMs;
    this.#retryDelayMs = Math.min(delay * 2, MAX_RETRY_DELAY_MS);
    this.#retryTimer = setTimeout(() => {
      this.#retryTimer = null;
      retry();
    }, delay);
    this.#retryTimer.unref();
  }
}
