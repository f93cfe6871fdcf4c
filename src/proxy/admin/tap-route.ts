// The admin listener's GET /tap: a live tap of this proxy's finished HTTP exchanges, as a stream
// of JSON lines (telemetry/tap-event.ts) that lasts until the reader closes it. The filter and cap
// are the query (src/core/tap-filter.ts). Who may tap: only a loopback peer whose Host names this
// host (not a web page's rebound name: src/core/host-field.ts). On one machine the
// control plane and the CLI are local; a network peer (anyone who can reach the admin port, which
// listens on every address for scrapers) is refused with 403 and counted, since request paths and
// identities are not for everyone who can read /metrics (docs/security.md, "Live tap").
// The first line says the tap is attached ({"type":"started"}), so a reader knows at once.
import type net from 'node:net';
import type { Logger } from '../../core/log.ts';
import { LogThrottle } from '../../core/log-rate-limit.ts';
import { hostNamesThisHost } from '../../core/host-field.ts';
import { parseTapFilter } from '../../core/tap-filter.ts';
import type { TapHub } from '../telemetry/tap-hub.ts';
import type { TapStartedEvent } from '../telemetry/tap-event.ts';
import { isLoopbackAddress, text, type AdminRequest, type AdminResponse } from './server.ts';

const NDJSON = 'application/x-ndjson';

export function tapRoute(
  hub: TapHub,
  log: Logger,
  /** The mTLS tap listener (tap-listener.ts) checked the caller's identity already: no loopback check. */
  callerVerified = false,
): { methods: readonly string[]; handle: (req: AdminRequest) => AdminResponse } {
  const refusedLog = new LogThrottle();
  return {
    methods: ['GET'],
    handle: (req) => {
      // A loopback peer is this host, unless it is a browser serving a web page that rebound its
      // own name to 127.0.0.1 (DNS rebinding): its Host is then that name, not this host's.
      const loopback = callerVerified || isLoopbackAddress(req.peer);
      if (!callerVerified && (!loopback || !hostNamesThisHost(req.host))) {
        if (loopback) hub.refusedForeignHostField();
        else hub.refusedNotLoopback();
        refusedLog.note((skipped) =>
          log.warn('admin: refused a tap from a non-loopback peer, or one whose Host names another host', {
            peer: req.peer,
            host: req.host?.slice(0, 100) ?? null,
            skipped,
          }),
        );
        return text(
          403,
          'tap is only allowed from loopback (the control plane on this host), for a Host naming this host\n',
        );
      }
      const filter = parseTapFilter(new URLSearchParams(req.query));
      if (typeof filter === 'string') return text(400, `${filter}\n`);
      const refused = hub.refusal();
      if (refused !== null) return text(429, `${refused}\n`);
      return {
        status: 200,
        contentType: NDJSON,
        body: '',
        takeOver: (socket: net.Socket) => {
          const sub = hub.subscribe(filter, socket);
          if (typeof sub === 'string') {
            socket.end(JSON.stringify({ type: 'error', error: sub }) + '\n');
            return;
          }
          const started: TapStartedEvent = { type: 'started', max_rps: filter.maxRps };
          socket.write(JSON.stringify(started) + '\n');
          socket.setKeepAlive(true, 10_000);
          // The reader's bytes (it should send none) are read and dropped; its end ends the tap.
          socket.on('data', () => {});
          socket.once('end', () => socket.end());
          socket.once('close', () => hub.unsubscribe(sub));
        },
      };
    },
  };
}
