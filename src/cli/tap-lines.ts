// The lines of a live tap as the CLI reads them from the control plane (GET /api/tap,
// src/control/tap/tap-api.ts): each JSON object is read into one of four kinds (an exchange, a
// proxy that cannot be tapped, drop counts, a tap attached) or refused, field by field, so that
// whatever a peer sends, `trellis tap` and `trellis top` only ever see well-formed values. Also the
// text forms of `trellis tap` (one line per exchange, Linkerd viz tap's key=value style).
import type { TapExchangeEvent } from '../proxy/telemetry/tap-event.ts';

/** An exchange with the proxy that saw it. */
export interface TapExchange extends Omit<TapExchangeEvent, 'type'> {
  readonly type: 'exchange';
  readonly namespace: string;
  readonly workload: string;
  readonly instance: string;
}

export type TapLine =
  | TapExchange
  | { readonly type: 'error'; readonly proxy: string; readonly error: string }
  | {
      readonly type: 'drops';
      readonly proxy: string;
      readonly rateCapped: number;
      readonly slowConsumer: number;
    }
  | { readonly type: 'started'; readonly proxy: string; readonly maxRps: number };

const str = (v: unknown, fallback = ''): string => (typeof v === 'string' ? v : fallback);
const strOrNull = (v: unknown): string | null => (typeof v === 'string' ? v : null);
const num = (v: unknown): number => (typeof v === 'number' && Number.isFinite(v) && v >= 0 ? v : 0);

/** "namespace/instance" of the proxy a line is about ('control-plane' for its own lines). */
function proxyOf(o: Record<string, unknown>): string {
  if (o.source === 'control-plane') return 'control-plane';
  const ns = str(o.namespace);
  const instance = str(o.instance, str(o.workload, '?'));
  return ns === '' ? instance : `${ns}/${instance}`;
}

/** A line of the stream as one of its kinds; null for anything else (unknown kinds are skipped). */
export function readTapLine(o: Record<string, unknown>): TapLine | null {
  switch (o.type) {
    case 'exchange': {
      const direction =
        o.direction === 'inbound' ? 'inbound' : o.direction === 'outbound' ? 'outbound' : null;
      if (direction === null || typeof o.path !== 'string') return null;
      return {
        type: 'exchange',
        namespace: str(o.namespace),
        workload: str(o.workload),
        instance: str(o.instance),
        ts: str(o.ts),
        direction,
        protocol: o.protocol === 'h2' ? 'h2' : 'http1',
        method: str(o.method),
        scheme: 'http',
        authority: str(o.authority),
        path: o.path,
        status: Math.trunc(num(o.status)),
        grpc_status: strOrNull(o.grpc_status),
        latency_ms: num(o.latency_ms),
        request_bytes: Math.trunc(num(o.request_bytes)),
        response_bytes: Math.trunc(num(o.response_bytes)),
        source: str(o.source),
        destination: str(o.destination),
        source_identity: strOrNull(o.source_identity),
        destination_identity: strOrNull(o.destination_identity),
        tls: o.tls === true,
        route: strOrNull(o.route),
        route_kind: strOrNull(o.route_kind),
        route_rule: strOrNull(o.route_rule),
        proxy_error: strOrNull(o.proxy_error),
      };
    }
    case 'error':
      return { type: 'error', proxy: proxyOf(o), error: str(o.error, 'unknown error') };
    case 'drops':
      return {
        type: 'drops',
        proxy: proxyOf(o),
        rateCapped: Math.trunc(num(o.rate_capped)),
        slowConsumer: Math.trunc(num(o.slow_consumer)),
      };
    case 'started':
      return { type: 'started', proxy: proxyOf(o), maxRps: Math.trunc(num(o.max_rps)) };
    default:
      return null;
  }
}

/** Whether an exchange succeeded: a response below 500, gRPC OK (or none), no proxy error. */
export function exchangeSucceeded(e: TapExchange): boolean {
  return (
    e.status > 0 &&
    e.status < 500 &&
    (e.grpc_status === null || e.grpc_status === '0') &&
    e.proxy_error === null
  );
}

/** Control characters and spaces would break a key=value line: shown escaped. */
function cell(value: string): string {
  const clean = value.replace(/[\s\p{Cc}]/gu, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
  return clean === '' ? '-' : clean;
}

/** "1.2ms" / "340µs" / "2.5s". */
export function formatLatency(ms: number): string {
  if (ms < 1) return `${Math.round(ms * 1000)}µs`;
  if (ms < 1000) return `${Number(ms.toFixed(ms < 10 ? 2 : 1))}ms`;
  return `${Number((ms / 1000).toFixed(2))}s`;
}

/** One exchange as a line of `trellis tap` (wide: with identities, protocol and the proxy). */
export function exchangeText(e: TapExchange, wide: boolean): string {
  const parts = [
    e.direction === 'inbound' ? 'in ' : 'out',
    `src=${cell(e.source)}`,
    `dst=${cell(e.destination)}`,
    `tls=${e.tls}`,
    `:method=${cell(e.method)}`,
    `:authority=${cell(e.authority)}`,
    `:path=${cell(e.path)}`,
    `:status=${e.status}`,
  ];
  if (e.grpc_status !== null) parts.push(`grpc-status=${cell(e.grpc_status)}`);
  parts.push(`latency=${formatLatency(e.latency_ms)}`, `rsp-bytes=${e.response_bytes}`);
  if (e.proxy_error !== null) parts.push(`proxy-error=${cell(e.proxy_error)}`);
  if (wide) {
    parts.push(
      `src-id=${cell(e.source_identity ?? '')}`,
      `dst-id=${cell(e.destination_identity ?? '')}`,
      `req-bytes=${e.request_bytes}`,
      `proto=${e.protocol}`,
      `proxy=${cell(e.namespace === '' ? e.instance : `${e.namespace}/${e.instance}`)}`,
    );
    if (e.route !== null) {
      parts.push(`route=${cell(e.route)}`);
      if (e.route_rule !== null) parts.push(`route-rule=${cell(e.route_rule)}`);
    }
  }
  return parts.join(' ');
}
