// Who may change the control plane's state over its HTTP API: an operator, who sends the operator
// token (src/control/operator-token.ts) as `Authorization: Bearer TOKEN`. The control plane's
// router (src/control/server.ts, routeHttp) asks `check` for every request whose method is not
// GET or HEAD, before any handler or body reading, so that every state-changing endpoint, present
// and future, is covered in one place. Where the request comes from grants nothing: a request
// relayed by a proxy on the same host needs the token like any other.
//
// The comparison takes the same time whatever the token sent (SHA-256 of both sides, compared with
// timingSafeEqual). A refusal is a 401 whose JSON says how to authenticate, is counted
// (trellis_control_http_unauthenticated_total{reason}) and logged, at most one line per 10 s with
// the number of refusals left unlogged since the last line (LogThrottle, core/log-rate-limit.ts).
import type { IncomingMessage, ServerResponse } from 'node:http';
import { bearerToken, matchesSecret, secretDigest } from '../core/bearer.ts';
import { silentLogger, type Logger } from '../core/log.ts';
import { LogThrottle } from '../core/log-rate-limit.ts';
import { Registry } from '../core/prometheus.ts';

/**
 * Reads that show live requests (paths, authorities, identities): a tap (GET /api/tap) and the
 * recent traces (GET /api/traces, /api/traces/ID). Where the HTTP API can be reached from other
 * hosts (`trellis control` on Kubernetes, `trellis up` on a non-loopback address) they need the
 * operator token like a change does (server.ts, ControlPlaneOptions.sensitiveReadsNeedOperator).
 */
export function isSensitiveRead(path: string): boolean {
  return path === '/api/tap' || path === '/api/traces' || path.startsWith('/api/traces/');
}

/** Why a request was refused: it carried no bearer token, or one that is not the operator token. */
export type Refusal = 'missing' | 'invalid';

export interface OperatorAuthOptions {
  /** The operator token; null: no one may change state (a control plane started without one). */
  readonly token: string | null;
  /** Where an operator finds the token, for the 401's explanation (e.g. "the file .trellis/operator-token"). */
  readonly tokenSource: string;
  readonly log?: Logger;
  readonly now?: () => number;
}

export class OperatorAuth {
  readonly #digest: Buffer | null;
  readonly #tokenSource: string;
  readonly #log: Logger;
  readonly #throttle: LogThrottle;
  readonly #refused: Record<Refusal, number> = { missing: 0, invalid: 0 };

  constructor(options: OperatorAuthOptions) {
    this.#digest = options.token === null ? null : secretDigest(options.token);
    this.#tokenSource = options.tokenSource;
    this.#log = (options.log ?? silentLogger).child({ component: 'operator-auth' });
    this.#throttle = new LogThrottle(undefined, options.now);
  }

  /** null when the request carries the operator token, else why not. */
  check(authorization: string | undefined): Refusal | null {
    const token = bearerToken(authorization);
    if (token === null) return 'missing';
    if (this.#digest === null) return 'invalid';
    return matchesSecret(token, this.#digest) ? null : 'invalid';
  }

  /**
   * Lets an operator's request through (true), or answers 401 (false): counted, logged at most
   * once per interval. The connection is closed after the answer: an unread body is not waited for.
   */
  admit(req: IncomingMessage, res: ServerResponse): boolean {
    const refusal = this.check(req.headers.authorization);
    if (refusal === null) return true;
    this.#refused[refusal]++;
    this.#logRefusal(req, refusal);
    const how =
      this.#digest === null
        ? `this control plane was started without an operator token (${this.#tokenSource}): nothing can change its state over HTTP`
        : `send the header "Authorization: Bearer TOKEN" with the operator token, ${this.#tokenSource}; the trellis CLI sends it itself`;
    res.writeHead(401, {
      'content-type': 'application/json',
      'www-authenticate': 'Bearer realm="trellis-control-plane"',
      connection: 'close',
    });
    res.end(
      JSON.stringify({
        error: `${req.method} ${pathOf(req)} ${isSensitiveRead(pathOf(req)) ? 'shows live requests' : "changes the control plane's state"} and needs an authenticated operator (${refusal === 'missing' ? 'no bearer token' : 'wrong token'})`,
        authenticate: how,
      }) + '\n',
    );
    return false;
  }

  /** Refusals so far, by reason. */
  get refused(): Readonly<Record<Refusal, number>> {
    return { ...this.#refused };
  }

  /** The refusal counter in the Prometheus text format. */
  metrics(): string {
    const registry = new Registry();
    const refused = registry.counter(
      'trellis_control_http_unauthenticated_total',
      'Requests to state-changing HTTP API endpoints (and, where it is reachable from other hosts, its reads of live requests) refused for want of the operator token, by reason.',
      ['reason'],
    );
    for (const reason of ['missing', 'invalid'] as const) refused.labels(reason).inc(this.#refused[reason]);
    return registry.render();
  }

  #logRefusal(req: IncomingMessage, reason: Refusal): void {
    this.#throttle.note((skipped) =>
      this.#log.warn('HTTP API request refused: not an authenticated operator', {
        method: req.method,
        path: pathOf(req),
        remote: req.socket.remoteAddress,
        reason,
        unloggedBefore: skipped,
      }),
    );
  }
}

function pathOf(req: IncomingMessage): string {
  return (req.url ?? '/').split('?')[0]!.slice(0, 200);
}
