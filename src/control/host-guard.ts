// DNS rebinding: a web page the operator opens in a browser on the control plane's host can point
// its own name at 127.0.0.1 once loaded, and then read the control plane's HTTP API as its own
// origin. Where that API listens on loopback only (`trellis up`'s default) its reads are open to
// the host, live requests included (GET /api/tap, /api/traces), so such a page would read them
// too. The page cannot choose the Host it sends: it is the page's own name. So an HTTP API
// reachable from this host only answers requests whose Host names this host (localhost, an IP
// address) and refuses any other name with 403 (server.ts routeHttp), as the dashboard relay does
// (src/cli/dashboard-relay.ts).
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from '../core/log.ts';
import { LogThrottle } from '../core/log-rate-limit.ts';
import { Registry } from '../core/prometheus.ts';
import { hostNamesThisHost } from '../core/host-field.ts';

/**
 * Refuses requests whose Host does not name this host (403, JSON), counted in
 * trellis_control_http_foreign_host_total and logged at most once per 10 s.
 */
export class HostGuard {
  #refused = 0;
  readonly #log: Logger;
  readonly #throttle = new LogThrottle();

  constructor(log: Logger) {
    this.#log = log;
  }

  /** True when the request may go on; else it was answered. */
  admit(req: IncomingMessage, res: ServerResponse): boolean {
    if (hostNamesThisHost(req.headers.host)) return true;
    this.#refused++;
    const host = (req.headers.host ?? '').slice(0, 100);
    this.#throttle.note((skipped) =>
      this.#log.warn('HTTP API request refused: its Host does not name this host (DNS rebinding?)', {
        host,
        path: (req.url ?? '/').split('?')[0]!.slice(0, 200),
        unloggedBefore: skipped,
      }),
    );
    res.writeHead(403, { 'content-type': 'application/json', connection: 'close' });
    res.end(
      JSON.stringify({
        error: `Host '${host}' does not name this host: this HTTP API listens on loopback and answers requests for localhost or an IP address only`,
      }) + '\n',
    );
    return false;
  }

  metrics(): string {
    const registry = new Registry();
    registry
      .counter(
        'trellis_control_http_foreign_host_total',
        'HTTP API requests refused because their Host named another host than this one (a loopback-only API: DNS rebinding).',
        [],
      )
      .labels()
      .inc(this.#refused);
    return registry.render();
  }
}
