// Leader election over a coordination.k8s.io/v1 Lease, with client-go's semantics (its
// leaderelection package, as Linkerd's policy controller uses it): every replica of `trellis
// control` runs one elector on the same Lease and only the holder writes route and policy status
// (routes/kubernetes.ts); every replica keeps serving proxies.
//
//   - acquire: the Lease is absent (create it), released (holderIdentity empty), or not renewed
//     for leaseDurationSeconds as observed on this replica's own clock (client-go measures expiry
//     from when it last saw the record change, not from the renewTime written by another clock)
//   - write: a PUT carrying the resourceVersion it read; 409 (Conflict on the PUT, AlreadyExists on
//     the create) means another replica won, which is not an error
//   - renew every retryPeriod while leading (PUT from the copy in hand, a GET first only after a
//     failure); try to acquire every retryPeriod to 2.2 * retryPeriod (client-go's jitter) otherwise
//   - give up leading when no renewal has succeeded for renewDeadline (counted from when that
//     renewal was sent, so a replica stops before any other can observe the Lease expire), or at once
//     when a read shows another holder
//   - stop (SIGTERM): stop leading, then release (client-go's ReleaseOnCancel): holderIdentity
//     empty, leaseDurationSeconds 1, so that another replica takes over on its next try
//
// Defaults are client-go's: leaseDuration 15 s, renewDeadline 10 s, retryPeriod 2 s. Every request
// is aborted after renewDeadline, so a hung connection cannot keep a replica leading.
import {
  CoordinationV1Api,
  V1MicroTime,
  Observable,
  type ConfigurationOptions,
  type KubeConfig,
  type ObservableMiddleware,
  type V1Lease,
} from '@kubernetes/client-node';
import type { Logger } from '../core/log.ts';

export interface LeaseElectorOptions {
  readonly kubeConfig: KubeConfig;
  readonly namespace: string;
  readonly name: string;
  /** Who this replica is in spec.holderIdentity (the pod name and a random suffix). */
  readonly identity: string;
  readonly log: Logger;
  /** Whole seconds (the Lease counts seconds). Default 15 s. */
  readonly leaseDurationMs?: number;
  /** Default 10 s. */
  readonly renewDeadlineMs?: number;
  /** Default 2 s. */
  readonly retryPeriodMs?: number;
  /** Release the Lease on stop() (default true; false leaves it to expire, as after a crash). */
  readonly releaseOnStop?: boolean;
  /** The clock observations are made with (tests move it). */
  readonly now?: () => number;
  readonly random?: () => number;
}

/** Who leads now, and news of every change. */
export interface Leadership {
  readonly leading: boolean;
  /** Calls `listener` on every change; returns the unsubscribe. */
  onChange(listener: (leading: boolean) => void): () => void;
}

/** client-go's JitterFactor for the tries to acquire. */
const JITTER = 1.2;

/** A write refused because another replica wrote first (409: Conflict or AlreadyExists). */
const isConflict = (error: unknown): boolean => (error as { code?: unknown }).code === 409;
const isNotFound = (error: unknown): boolean => (error as { code?: unknown }).code === 404;

export class LeaseElector implements Leadership {
  readonly #api: CoordinationV1Api;
  readonly #options: LeaseElectorOptions;
  readonly #leaseDurationMs: number;
  readonly #renewDeadlineMs: number;
  readonly #retryPeriodMs: number;
  readonly #now: () => number;
  readonly #random: () => number;
  readonly #listeners = new Set<(leading: boolean) => void>();
  #leading = false;
  /** The Lease as this replica last wrote it (while it holds it): the next renewal's base. */
  #held: V1Lease | null = null;
  /** The holder and renewTime last read, and when (this replica's clock) they last changed. */
  #observed: { holder: string; renewTime: string; durationMs: number } | null = null;
  #observedAt = 0;
  #attempt: Promise<void> | null = null;
  #timer: NodeJS.Timeout | null = null;
  #deadline: NodeJS.Timeout | null = null;
  #failing = false;
  #started = false;
  #stopped = false;
  #acquisitions = 0;

  constructor(options: LeaseElectorOptions) {
    this.#options = options;
    this.#leaseDurationMs = options.leaseDurationMs ?? 15_000;
    this.#renewDeadlineMs = options.renewDeadlineMs ?? 10_000;
    this.#retryPeriodMs = options.retryPeriodMs ?? 2_000;
    if (this.#leaseDurationMs < 1000 || this.#leaseDurationMs % 1000 !== 0)
      throw new RangeError('leaseDurationMs must be whole seconds, at least 1000');
    // client-go's checks: a leader gives up before the others may take over, and tries more than once.
    if (this.#renewDeadlineMs >= this.#leaseDurationMs)
      throw new RangeError('renewDeadlineMs must be shorter than leaseDurationMs');
    if (this.#renewDeadlineMs <= JITTER * this.#retryPeriodMs)
      throw new RangeError('renewDeadlineMs must be longer than 1.2 * retryPeriodMs');
    this.#now = options.now ?? Date.now;
    this.#random = options.random ?? Math.random;
    this.#api = options.kubeConfig.makeApiClient(CoordinationV1Api);
  }

  get leading(): boolean {
    return this.#leading;
  }

  /** Times this replica began leading. */
  get acquisitions(): number {
    return this.#acquisitions;
  }

  get identity(): string {
    return this.#options.identity;
  }

  onChange(listener: (leading: boolean) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Starts trying to acquire (the first try at once). */
  start(): void {
    if (this.#started || this.#stopped) return;
    this.#started = true;
    this.#schedule(0);
  }

  /** Stops leading at once, then releases the Lease if this replica holds it (unless releaseOnStop is false). */
  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = null;
    this.#setLeading(false, 'stopping');
    this.#listeners.clear();
    await this.#attempt;
    if (this.#options.releaseOnStop === false || this.#held === null) return;
    const now = new V1MicroTime(this.#now());
    const held = this.#held;
    this.#held = null;
    try {
      await this.#replace({
        ...held,
        spec: {
          ...held.spec,
          holderIdentity: '',
          leaseDurationSeconds: 1,
          acquireTime: now,
          renewTime: now,
        },
      });
      this.#options.log.info('released the status lease', this.#fields());
    } catch (error) {
      // Another replica wrote it meanwhile (409), or the API is away: it expires by itself.
      this.#options.log.warn('could not release the status lease; it expires by itself', {
        ...this.#fields(),
        error: (error as Error).message,
      });
    }
  }

  #fields(): Record<string, unknown> {
    return { lease: `${this.#options.namespace}/${this.#options.name}`, identity: this.#options.identity };
  }

  #schedule(delayMs: number): void {
    if (this.#stopped) return;
    this.#timer = setTimeout(() => {
      this.#timer = null;
      this.#attempt = this.#tryAcquireOrRenew().finally(() => {
        this.#attempt = null;
        const retry = this.#retryPeriodMs;
        this.#schedule(this.#leading ? retry : retry + this.#random() * JITTER * retry);
      });
    }, delayMs);
  }

  async #tryAcquireOrRenew(): Promise<void> {
    const sentAt = this.#now();
    try {
      const won = await this.#acquireOrRenew(sentAt);
      if (this.#failing) this.#options.log.info('the status lease is reachable again', this.#fields());
      this.#failing = false;
      if (won) this.#renewed(sentAt);
    } catch (error) {
      this.#held = null;
      if (!this.#failing)
        this.#options.log.warn('trying for the status lease failed; retrying', {
          ...this.#fields(),
          error: (error as Error).message,
          ...((error as { code?: unknown }).code === 403
            ? { hint: 'the control plane needs get, create and update of leases (coordination.k8s.io)' }
            : {}),
        });
      this.#failing = true;
    }
  }

  /** One try (client-go's tryAcquireOrRenew): true when this replica holds the Lease now. */
  async #acquireOrRenew(sentAt: number): Promise<boolean> {
    const spec = (base: V1Lease | null) => {
      const old = base?.spec ?? {};
      const mine = old.holderIdentity === this.#options.identity;
      return {
        holderIdentity: this.#options.identity,
        leaseDurationSeconds: this.#leaseDurationMs / 1000,
        acquireTime: mine && old.acquireTime !== undefined ? old.acquireTime : new V1MicroTime(sentAt),
        renewTime: new V1MicroTime(sentAt),
        leaseTransitions: mine ? (old.leaseTransitions ?? 0) : (old.leaseTransitions ?? -1) + 1,
      };
    };
    // The leader renews from the copy it wrote last, without reading first.
    if (this.#leading && this.#held !== null) {
      try {
        this.#held = await this.#replace({ ...this.#held, spec: spec(this.#held) });
        return true;
      } catch (error) {
        this.#held = null;
        if (!isConflict(error)) throw error;
        // Someone else wrote the Lease: read it, as any other replica would.
      }
    }
    let current: V1Lease;
    try {
      current = await this.#api.readNamespacedLease(
        { namespace: this.#options.namespace, name: this.#options.name },
        this.#requestOptions(),
      );
    } catch (error) {
      if (!isNotFound(error)) throw error;
      try {
        this.#held = await this.#api.createNamespacedLease(
          {
            namespace: this.#options.namespace,
            body: {
              apiVersion: 'coordination.k8s.io/v1',
              kind: 'Lease',
              metadata: { name: this.#options.name, namespace: this.#options.namespace },
              spec: spec(null),
            },
          },
          this.#requestOptions(),
        );
        return true;
      } catch (createError) {
        if (isConflict(createError)) return false;
        throw createError;
      }
    }
    this.#observe(current, sentAt);
    const holder = current.spec?.holderIdentity ?? '';
    if (holder !== '' && holder !== this.#options.identity) {
      const validUntil = this.#observedAt + (this.#observed?.durationMs ?? this.#leaseDurationMs);
      if (validUntil > sentAt) {
        // Another replica holds it: if this one thought it led, it stops now.
        this.#setLeading(false, `held by ${holder}`);
        return false;
      }
    }
    try {
      this.#held = await this.#replace({ ...current, spec: spec(current) });
      return true;
    } catch (error) {
      if (isConflict(error)) return false;
      throw error;
    }
  }

  /** Notes the record read; its expiry counts from when it last changed, on this replica's clock. */
  #observe(lease: V1Lease, at: number): void {
    const record = {
      holder: lease.spec?.holderIdentity ?? '',
      renewTime: String(lease.spec?.renewTime ?? ''),
      durationMs: (lease.spec?.leaseDurationSeconds ?? this.#leaseDurationMs / 1000) * 1000,
    };
    const old = this.#observed;
    if (old === null || old.holder !== record.holder || old.renewTime !== record.renewTime)
      this.#observedAt = at;
    this.#observed = record;
  }

  #renewed(sentAt: number): void {
    if (this.#stopped) return;
    // Lead until renewDeadline after this renewal was sent, unless a later one succeeds.
    if (this.#deadline !== null) clearTimeout(this.#deadline);
    const remaining = sentAt + this.#renewDeadlineMs - this.#now();
    if (remaining <= 0) {
      this.#setLeading(false, `the renewal took longer than ${this.#renewDeadlineMs} ms`);
      return;
    }
    this.#deadline = setTimeout(() => {
      this.#deadline = null;
      this.#held = null;
      this.#setLeading(false, `no renewal succeeded for ${this.#renewDeadlineMs} ms`);
    }, remaining);
    this.#deadline.unref();
    this.#setLeading(true, 'acquired');
  }

  #setLeading(leading: boolean, reason: string): void {
    if (!leading && this.#deadline !== null) {
      clearTimeout(this.#deadline);
      this.#deadline = null;
    }
    if (leading === this.#leading) return;
    this.#leading = leading;
    if (leading) {
      this.#acquisitions++;
      this.#options.log.info('holding the status lease: this replica writes route status', this.#fields());
    } else
      this.#options.log.info('not holding the status lease any more: route status writes stop', {
        ...this.#fields(),
        reason,
      });
    for (const listener of [...this.#listeners]) listener(leading);
  }

  #replace(lease: V1Lease): Promise<V1Lease> {
    return this.#api.replaceNamespacedLease(
      { namespace: this.#options.namespace, name: this.#options.name, body: lease },
      this.#requestOptions(),
    );
  }

  /** Aborts the request after renewDeadline: a hung connection must not hold up the next try. */
  #requestOptions(): ConfigurationOptions {
    const timeoutMs = this.#renewDeadlineMs;
    const timeout: ObservableMiddleware = {
      pre: (context) => {
        context.setSignal(AbortSignal.timeout(timeoutMs));
        return new Observable(Promise.resolve(context));
      },
      post: (response) => new Observable(Promise.resolve(response)),
    };
    return { middleware: [timeout], middlewareMergeStrategy: 'append' };
  }
}
