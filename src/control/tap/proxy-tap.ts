// One proxy's live tap, as the control plane reads it (GET /tap on the proxy's admin listener,
// src/proxy/admin/tap-route.ts): a request with the filter's query, then one JSON object per
// line until either side stops. Whatever goes wrong (no connection, a refusal, a broken stream)
// ends it with a reason, so the fan-out (tap-api.ts) can say at once which proxy cannot be tapped.
import { request, type ClientRequest } from 'node:http';
import { request as requestTls } from 'node:https';
import { NdjsonReader } from '../../core/ndjson.ts';
import { proxyTlsOptions, type ProxyTapTls } from './proxy-tap-tls.ts';

/** Time to the proxy's answer (its head and the "started" line follow at once when it taps). */
export const PROXY_TAP_CONNECT_TIMEOUT_MS = 3000;
/** The longest line read from a proxy (an event is far smaller). */
export const PROXY_TAP_MAX_LINE_BYTES = 64 * 1024;

export interface ProxyTapHandlers {
  onObject(value: Record<string, unknown>): void;
  /** The tap ended: null when the proxy closed it normally, else why it failed. Called once. */
  onEnd(error: string | null): void;
}

export interface ProxyTap {
  /** Stops the tap (the proxy detaches it when its connection closes). onEnd is not called. */
  close(): void;
}

/**
 * Opens a tap of the proxy whose admin listener is at `admin` ("HOST:PORT"), or with `mtls`, of
 * its mTLS tap listener at that address (proxy-tap-tls.ts).
 */
export function openProxyTap(
  admin: string,
  query: string,
  handlers: ProxyTapHandlers,
  mtls: ProxyTapTls | null = null,
): ProxyTap {
  const colon = admin.lastIndexOf(':');
  const host = admin.slice(0, colon).replace(/^\[|\]$/g, '');
  let ended = false;
  const end = (error: string | null): void => {
    if (ended) return;
    ended = true;
    handlers.onEnd(error);
  };
  const req: ClientRequest = (mtls === null ? request : requestTls)(
    {
      host,
      port: Number(admin.slice(colon + 1)),
      path: query === '' ? '/tap' : `/tap?${query}`,
      agent: false,
      timeout: PROXY_TAP_CONNECT_TIMEOUT_MS,
      ...(mtls === null ? {} : proxyTlsOptions(mtls)),
    },
    (res) => {
      req.setTimeout(0); // a tap with nothing to show is silent for as long as it runs
      if (res.statusCode !== 200) {
        // A refusal is short: its body gets PROXY_TAP_CONNECT_TIMEOUT_MS in all, so that a proxy
        // that sends a refusal's head and then never ends its body (or trickles it) is named
        // like one that never answers, not waited for while the tap shows nothing of it.
        let body = '';
        const refused = () => `HTTP ${res.statusCode}: ${body.trim().slice(0, 300)}`;
        const timer = setTimeout(() => {
          end(refused());
          req.destroy();
        }, PROXY_TAP_CONNECT_TIMEOUT_MS);
        res.setEncoding('utf8');
        res.on('data', (d: string) => {
          if (body.length < 1024) body += d;
        });
        res.on('end', () => end(refused()));
        res.on('error', () => end(`HTTP ${res.statusCode}`));
        res.on('close', () => clearTimeout(timer)); // after 'end' or 'error' too
        return;
      }
      const reader = new NdjsonReader(PROXY_TAP_MAX_LINE_BYTES, (v) => {
        if (!ended) handlers.onObject(v);
      });
      res.on('data', (chunk: Buffer) => reader.push(chunk));
      res.on('end', () => {
        reader.end();
        end(null);
      });
      res.on('error', (err) => end(`the tap stream broke: ${err.message}`));
      res.on('close', () => end(null));
    },
  );
  req.on('timeout', () => {
    end(`no answer within ${PROXY_TAP_CONNECT_TIMEOUT_MS / 1000} s`);
    req.destroy();
  });
  req.on('error', (err) => end(`cannot connect: ${err.message}`));
  req.end();
  return {
    close() {
      ended = true;
      req.destroy();
    },
  };
}
