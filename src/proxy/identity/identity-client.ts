// The proxy's identity from the control plane (Identity.Certify, src/api/identity.proto). On
// start and at each renewal the client makes a fresh ECDSA P-256 key in memory (it never leaves
// the process), sends a CSR for the workload's SPIFFE ID with the workload's token (re-read from
// its file every time: Kubernetes rotates projected ServiceAccount tokens), checks the answer
// (certified.ts), swaps the new credentials in and tells the listeners. Connections already open
// keep the credentials they started with, so a renewal drops nothing.
//
// Renewal is at 70% ± 5% of the leaf's lifetime (renewal.ts). A failure keeps the current
// credentials (they stay valid for the remaining 25-35% of their life) and retries with an
// exponential backoff. At most one thing is pending at any time: a timer or one attempt. Requests
// go to where the control plane is now (src/proxy/resolve/control-plane-address.ts): a retry
// waiting for a control plane that restarted or moved is made at once, renewals go to it (the
// retries are the shared control-plane-retry.ts; the log lines are this client's own, since an
// expired certificate and a workload not registered yet deserve their own levels).
import { generateKeyPair as generateKeyPairCallback } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { promisify } from 'node:util';
import * as grpc from '@grpc/grpc-js';
import {
  Identity,
  reconnectBackoffOptions,
  type ApiCertifyResponseOutput,
  type IdentityClient,
} from '../../api/client.ts';
import { systemTimers, type Clock, type TimerHandle, type Timers } from '../../core/clock.ts';
import { TrellisError } from '../../core/errors.ts';
import type { Logger } from '../../core/log.ts';
import { mathRandom, type Random } from '../../core/random.ts';
import { certifiedKeyFromResponse } from './certified.ts';
import { createCsr } from './csr.ts';
import type { CertifiedKey, WorkloadIdentity } from './provider.ts';
import { IDENTITY_BACKOFF, renewalTime } from './renewal.ts';
import { type ControlPlaneLocator, locateControlPlane } from '../resolve/control-plane-address.ts';
import { ControlPlaneClient } from '../resolve/control-plane-client.ts';
import { ControlPlaneRetry } from '../resolve/control-plane-retry.ts';

const generateKeyPair = promisify(generateKeyPairCallback);

export interface IdentityClientOptions {
  /** The control plane's Identity API, "host:port" (plaintext: loopback, or a trusted network). */
  readonly address: string;
  /** Where the control plane is now (default: the process's, see control-plane-address.ts). */
  readonly locator?: ControlPlaneLocator;
  /** The SPIFFE ID to ask for. */
  readonly id: string;
  /** A file holding the workload's token, read (and trimmed) before every request. */
  readonly tokenFile?: string;
  /** A fixed token, when there is no tokenFile. Neither: an empty token (the CA will refuse it). */
  readonly token?: string;
  readonly log: Logger;
  /**
   * Wall-clock time in ms since the epoch (it is compared with certificates' validity) and the
   * timers on the same timeline. Default: Date.now and Node's (unref'd) timers.
   */
  readonly clock?: Clock & Timers;
  /** Draws for the renewal and retry jitter. */
  readonly random?: Random;
  /** Per-request deadline (default 10 s). */
  readonly deadlineMs?: number;
}

/** A WorkloadIdentity kept current by the control plane, with its last failure for metrics. */
export interface RenewingIdentity extends WorkloadIdentity {
  /** Why the most recent request for a certificate failed; null when it succeeded (or none yet). */
  lastError(): string | null;
}

/** The error ready() rejects with when the client is closed before its first certificate. */
export const IDENTITY_CLOSED = 'TRELLIS_ERR_IDENTITY_CLOSED';
/** The error code for a token file that cannot be read. */
export const IDENTITY_TOKEN = 'TRELLIS_ERR_IDENTITY_TOKEN';

/** UNAUTHENTICATED this soon after start is expected: the workload registers just after its proxy. */
const QUIET_UNAUTHENTICATED_MS = 5_000;
/** setTimeout's largest delay; longer waits are done in steps (a one-year leaf renews after months). */
const MAX_TIMER_MS = 2 ** 31 - 1;

const wallClock: Clock & Timers = { now: () => Date.now(), setTimeout: systemTimers.setTimeout };

/** Starts asking for a certificate at once; see the file comment. */
export function createIdentityClient(opts: IdentityClientOptions): RenewingIdentity {
  const clock = opts.clock ?? wallClock;
  const random = opts.random ?? mathRandom;
  const deadlineMs = opts.deadlineMs ?? 10_000;
  const log = opts.log.child({ component: 'identity', id: opts.id });
  const client = new ControlPlaneClient<IdentityClient>(
    opts.locator ?? locateControlPlane(opts.address),
    (address) =>
      new Identity(address, grpc.credentials.createInsecure(), reconnectBackoffOptions(IDENTITY_BACKOFF)),
  );

  const startedAt = clock.now();
  const listeners = new Set<(key: CertifiedKey) => void>();
  let current: CertifiedKey | null = null;
  let lastError: string | null = null;
  let closed = false;
  let timer: TimerHandle | null = null;
  let call: grpc.ClientUnaryCall | null = null;

  let resolveReady!: () => void;
  let rejectReady!: (err: Error) => void;
  const ready = new Promise<void>((resolve, reject) => {
    resolveReady = resolve;
    rejectReady = reject;
  });
  // Nobody may be waiting when close() rejects it; that must not be an unhandled rejection.
  ready.catch(() => {});

  const readToken = async (): Promise<Buffer> => {
    if (opts.tokenFile === undefined) return Buffer.from(opts.token ?? '', 'utf8');
    try {
      return Buffer.from((await readFile(opts.tokenFile, 'utf8')).trim(), 'utf8');
    } catch (err) {
      throw new TrellisError(
        IDENTITY_TOKEN,
        `cannot read the token file ${opts.tokenFile}: ${(err as Error).message}`,
        { cause: err },
      );
    }
  };

  const certify = (token: Buffer, csr: Buffer): Promise<ApiCertifyResponseOutput> =>
    new Promise((resolve, reject) => {
      call = client.get().Certify(
        { identity: opts.id, token, certificateSigningRequest: csr },
        // gRPC deadlines are wall-clock instants, whatever clock the schedule runs on.
        { deadline: Date.now() + deadlineMs },
        (err, response) => {
          call = null;
          if (err !== null || response === undefined) reject(err ?? new Error('Certify: empty response'));
          else resolve(response);
        },
      );
    });

  /** Runs `fn` at wall-clock time `at` (in steps when it is further than a timer can wait). */
  const scheduleAt = (at: number, fn: () => void): void => {
    const delay = at - clock.now();
    timer =
      delay > MAX_TIMER_MS
        ? clock.setTimeout(() => scheduleAt(at, fn), MAX_TIMER_MS)
        : clock.setTimeout(fn, Math.max(0, delay));
  };

  const succeed = (key: CertifiedKey): void => {
    current = key;
    retry.succeeded();
    lastError = null;
    const now = clock.now();
    const renewAt = renewalTime(key.notBeforeMs, key.expiresAtMs, now, random);
    log.info('identity: certificate issued', {
      expiresAt: new Date(key.expiresAtMs).toISOString(),
      renewInMs: Math.round(renewAt - now),
    });
    resolveReady();
    for (const listener of Array.from(listeners)) {
      try {
        listener(key);
      } catch (err) {
        log.warn('identity: a change listener failed', { err });
      }
    }
    scheduleAt(renewAt, attempt);
  };

  const fail = (err: unknown): void => {
    const grpcCode = (err as Partial<grpc.ServiceError>).code;
    const isGrpc = typeof grpcCode === 'number' && typeof (err as grpc.ServiceError).details === 'string';
    const status = isGrpc ? (grpc.status[grpcCode] ?? String(grpcCode)) : undefined;
    const message = isGrpc ? (err as grpc.ServiceError).details : String((err as Error)?.message ?? err);
    lastError = status === undefined ? message : `${status}: ${message}`;
    const delay = retry.failed(isGrpc);
    const fields = {
      ...(status === undefined ? {} : { status }),
      error: message,
      failures: retry.failures,
      retryInMs: Math.round(delay),
      ...(current === null ? {} : { currentExpiresAt: new Date(current.expiresAtMs).toISOString() }),
    };
    const now = clock.now();
    const quiet = grpcCode === grpc.status.UNAUTHENTICATED && now - startedAt < QUIET_UNAUTHENTICATED_MS;
    if (quiet) log.debug('identity: not registered yet; retrying', fields);
    else if (current !== null && current.expiresAtMs <= now) {
      // Every new mesh connection now fails its handshake: say so louder than a warning.
      log.error('identity: the certificate has expired and renewing it fails; retrying', fields);
    } else log.warn('identity: certificate request failed; keeping the current one and retrying', fields);
  };

  async function attempt(): Promise<void> {
    timer = null;
    if (closed) return;
    try {
      const { privateKey, publicKey } = await generateKeyPair('ec', { namedCurve: 'P-256' });
      const token = await readToken();
      if (closed) return;
      const response = await certify(token, createCsr({ privateKey, publicKey }, opts.id));
      if (closed) return;
      succeed(
        certifiedKeyFromResponse(response, {
          id: opts.id,
          publicKeyDer: publicKey.export({ type: 'spki', format: 'der' }),
          keyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }) as string,
          nowMs: clock.now(),
        }),
      );
    } catch (err) {
      if (!closed) fail(err);
    }
  }

  // A retry waiting out its backoff is made at once when the control plane restarted or moved.
  const retry = new ControlPlaneRetry({
    locator: client.locator,
    backoff: IDENTITY_BACKOFF,
    run: () => void attempt(),
    timers: clock,
    random,
  });
  void attempt();

  return {
    id: opts.id,
    current: () => current,
    ready: () => ready,
    lastError: () => lastError,
    onChange(listener) {
      listeners.add(listener);
      return () => {
        listeners.delete(listener);
      };
    },
    close() {
      if (closed) return;
      closed = true;
      retry.close();
      timer?.cancel();
      timer = null;
      call?.cancel();
      call = null;
      client.close();
      listeners.clear();
      rejectReady(
        new TrellisError(IDENTITY_CLOSED, `identity ${opts.id}: closed before a certificate was issued`),
      );
    },
  };
}
