// The identity part of the control plane (a ControlPlaneComponent, src/control/server.ts):
//
//   gRPC  trellis.identity.v1.Identity/Certify   token check (TokenVerifier), then a leaf from the
//                                                CertificateAuthority; refusals as gRPC statuses
//   GET   /api/identity         the authority: trust domain, anchors, issuer, rotation, counts
//   POST  /api/identity/rotate  starts an anchor rotation (409 while one runs); like every
//                               state-changing request, only an operator's gets here (server.ts)
//   metrics()                   expiry timestamps, certificates issued, Certify errors by code,
//                               served with the control plane's GET /metrics
//
// It also keeps the authority's timer: `ca.tick()` renews the issuer and runs rotation steps and
// says when it wants to run again (never later than an hour, so a changed clock is noticed).
import * as grpc from '@grpc/grpc-js';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { loadIdentityApi, type ApiCertifyResponse, type IdentityHandlers } from '../../api/load.ts';
import { systemTimers, type TimerHandle, type Timers } from '../../core/clock.ts';
import { silentLogger, type Logger } from '../../core/log.ts';
import { Registry } from '../../core/prometheus.ts';
import type { ControlPlaneComponent } from '../server.ts';
import { RotationError, type CertificateAuthority } from './ca.ts';
import { IdentityError, type IdentityStatus } from './errors.ts';
import type { TokenVerifier } from './tokens.ts';

export interface IdentityComponentOptions {
  readonly ca: CertificateAuthority;
  readonly verifier: TokenVerifier;
  /** Wall-clock ms since the epoch; must be the clock the authority uses. */
  readonly now?: () => number;
  readonly timers?: Timers;
  readonly log?: Logger;
}

const SPIFFE_ID = /^spiffe:\/\/([a-z0-9.-]+)\/ns\/([a-z0-9][-a-z0-9]*)\/sa\/([a-z0-9][-a-z0-9.]*)$/;
const MAX_TIMER_MS = 3600_000;
const RETRY_MS = 60_000;

export class IdentityComponent implements ControlPlaneComponent {
  readonly #ca: CertificateAuthority;
  readonly #verifier: TokenVerifier;
  readonly #now: () => number;
  readonly #timers: Timers;
  readonly #log: Logger;
  readonly #errors = new Map<IdentityStatus | 'INTERNAL', number>();
  #timer: TimerHandle | null = null;
  #closed = false;

  constructor(options: IdentityComponentOptions) {
    this.#ca = options.ca;
    this.#verifier = options.verifier;
    this.#now = options.now ?? Date.now;
    this.#timers = options.timers ?? systemTimers;
    this.#log = (options.log ?? silentLogger).child({ component: 'identity' });
    this.#runTick();
  }

  /** The authority (the control plane issues its own tap client certificate from it). */
  get authority(): CertificateAuthority {
    return this.#ca;
  }

  addGrpcServices(server: grpc.Server): void {
    const handlers: IdentityHandlers = {
      Certify: (call, callback) => {
        const { identity, token, certificateSigningRequest } = call.request;
        this.certify(identity, token, certificateSigningRequest).then(
          (response) => callback(null, response),
          (error: unknown) => callback(this.#refusal(identity, error)),
        );
      },
    };
    server.addService(loadIdentityApi().Identity.service, handlers);
  }

  /** Checks the request and issues; throws IdentityError (the transport maps it to a status). */
  async certify(identity: string, token: Uint8Array, csr: Uint8Array): Promise<ApiCertifyResponse> {
    if (!SPIFFE_ID.test(identity)) {
      throw new IdentityError(
        'INVALID_ARGUMENT',
        `identity ${JSON.stringify(identity.slice(0, 200))} is not spiffe://TRUST-DOMAIN/ns/NAMESPACE/sa/SERVICE-ACCOUNT`,
      );
    }
    if (token.length === 0) throw new IdentityError('UNAUTHENTICATED', 'no token');
    await this.#verifier.authorize(Buffer.from(token).toString('utf8'), identity);
    const issued = this.#ca.issue(csr, identity);
    return {
      leafCertificate: issued.leafDer,
      intermediateCertificates: issued.intermediatesDer,
      validUntilMs: issued.validUntilMs,
      trustAnchorsPem: issued.trustAnchorsPem,
    };
  }

  #refusal(identity: string, error: unknown): Partial<grpc.StatusObject> {
    const known = error instanceof IdentityError;
    const status = known ? error.status : 'INTERNAL';
    this.#errors.set(status, (this.#errors.get(status) ?? 0) + 1);
    const message = known ? error.message : `internal error: ${(error as Error).message}`;
    if (known && error.expected)
      this.#log.debug('certificate refused', { identity, status, reason: message });
    else if (known) this.#log.info('certificate refused', { identity, status, reason: message });
    else this.#log.error('certificate request failed', { identity, error });
    return { code: grpc.status[status], details: message };
  }

  async handleHttp(req: IncomingMessage, res: ServerResponse, path: string): Promise<boolean> {
    const send = (status: number, body: unknown): void => {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(body, null, 2) + '\n');
    };
    const allow = (method: string): boolean => {
      if (req.method === method || (method === 'GET' && req.method === 'HEAD')) return true;
      res.setHeader('allow', method === 'GET' ? 'GET, HEAD' : method);
      send(405, { error: 'method not allowed' });
      return false;
    };
    if (path === '/api/identity') {
      if (allow('GET')) send(200, this.#ca.status());
      return true;
    }
    if (path === '/api/identity/rotate') {
      if (!allow('POST')) return true;
      try {
        const phase = await this.#ca.startRotation();
        this.#runTick(); // the next step's time has changed
        send(200, { phase, rotation: this.#ca.status().rotation });
      } catch (error) {
        if (!(error instanceof RotationError)) throw error;
        send(error.busy ? 409 : 400, { error: error.message, phase: this.#ca.rotationPhase });
      }
      return true;
    }
    return false;
  }

  /**
   * The metrics in the Prometheus text format. A fresh registry each time: the anchors (one series
   * each) come and go with rotations, and a scrape every few seconds costs nothing here.
   */
  metrics(): string {
    const registry = new Registry();
    const anchors = registry.gauge(
      'trellis_identity_anchor_expiry_timestamp_seconds',
      'When each trust anchor of the bundle expires (Unix seconds).',
      ['fingerprint'],
    );
    for (const a of this.#ca.anchorCerts) anchors.labels(a.fingerprint).set(a.notAfterMs / 1000);
    registry
      .gauge(
        'trellis_identity_issuer_expiry_timestamp_seconds',
        'When the issuer certificate expires (Unix seconds).',
      )
      .labels()
      .set(this.#ca.issuerCert.notAfterMs / 1000);
    registry
      .counter(
        'trellis_identity_certificates_issued_total',
        'Leaf certificates issued since the control plane started.',
      )
      .labels()
      .inc(this.#ca.issued);
    const errors = registry.counter(
      'trellis_identity_certify_errors_total',
      'Certify requests refused, by gRPC status.',
      ['code'],
    );
    for (const [code, count] of this.#errors) errors.labels(code).inc(count);
    return registry.render();
  }

  #runTick(): void {
    this.#timer?.cancel();
    this.#timer = null;
    if (this.#closed) return;
    this.#ca.tick().then(
      (nextAt) => this.#schedule(nextAt - this.#now()),
      (error: unknown) => {
        this.#log.error('identity upkeep failed (issuer renewal or rotation step); retrying in a minute', {
          error,
        });
        this.#schedule(RETRY_MS);
      },
    );
  }

  #schedule(delayMs: number): void {
    if (this.#closed) return;
    this.#timer?.cancel();
    this.#timer = this.#timers.setTimeout(
      () => this.#runTick(),
      Math.min(Math.max(delayMs, 0), MAX_TIMER_MS),
    );
  }

  close(): void {
    this.#closed = true;
    this.#timer?.cancel();
  }
}
