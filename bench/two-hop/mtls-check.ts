// Preconditions of the two-hop benchmark: that each contender's second hop really is mutual TLS
// before its numbers are believed. For haproxy and nginx, the second hop is probed directly: with
// the client's certificate it must answer 200 over TLS 1.3; with no certificate, and with a
// certificate from a CA nobody trusts, it must refuse (handshake alert, closed connection or an
// error status: nginx answers 400 "No required SSL certificate was sent"). For trellis, the
// server-side proxy's own metrics must show inbound mesh (mTLS) connections and inbound requests.
import { request } from 'node:http';
import { connect } from 'node:tls';
import { parsePrometheusText, sumSamples } from '../../src/core/prom-parse.ts';
import type { Leaf, Pki } from './pki.ts';

export interface Probe {
  /** The negotiated TLS version, or null when the handshake did not complete. */
  readonly tlsVersion: string | null;
  /** The HTTP status answered, or null when none came. */
  readonly status: number | null;
  readonly error: string | null;
}

/** One `GET /` over TLS to host:port, presenting `leaf` (or no certificate); bounded to 5 s. */
export function probe(host: string, port: number, pki: Pki, serverName: string, leaf: Leaf | null) {
  return new Promise<Probe>((resolve) => {
    let tlsVersion: string | null = null;
    let data = '';
    let settled = false;
    const socket = connect({
      host,
      port,
      servername: serverName,
      ca: pki.rootPem,
      ...(leaf ? { key: leaf.keyPem, cert: leaf.chainPem } : {}),
      minVersion: 'TLSv1.3',
      ALPNProtocols: ['http/1.1'],
    });
    const done = (error: string | null): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      const m = /^HTTP\/1\.[01] (\d{3})/.exec(data);
      resolve({ tlsVersion, status: m ? Number(m[1]) : null, error });
    };
    const timer = setTimeout(() => done('no answer within 5 s'), 5000);
    socket.on('secureConnect', () => {
      tlsVersion = socket.getProtocol();
      socket.write(`GET / HTTP/1.1\r\nHost: ${serverName}\r\nConnection: close\r\n\r\n`);
    });
    socket.on('data', (chunk: Buffer) => {
      data += chunk.toString('latin1');
      if (/^HTTP\/1\.[01] \d{3}/.test(data)) done(null);
    });
    socket.on('error', (err) => done(err.message));
    socket.on('close', () => done(data === '' ? 'closed without an answer' : null));
  });
}

const refused = (p: Probe): boolean => p.status !== 200;

/** A probe's outcome in a few words: the status, the TLS alert, or the error's start. */
export function describe(p: Probe): string {
  if (p.status !== null) return `HTTP ${p.status}`;
  if (p.error === null) return 'no answer';
  // OpenSSL errors read "...:SSL routines:ssl3_read_bytes:tlsv13 alert certificate required:file:line".
  const alert = /:([^:]*alert[^:]*):/.exec(p.error)?.[1];
  return alert ?? p.error.slice(0, 80);
}

/**
 * Checks the second hop of a haproxy or nginx pair; returns a one-line summary of what was seen,
 * or throws naming the check that failed (the contender is then not measured).
 */
export async function checkSecondHop(name: string, host: string, port: number, pki: Pki): Promise<string> {
  const serverName = pki.server.dnsName;
  const ok = await probe(host, port, pki, serverName, pki.client);
  if (ok.status !== 200 || ok.tlsVersion !== 'TLSv1.3') {
    throw new Error(
      `${name}: mTLS precondition failed: the second hop with the client certificate gave ` +
        `${describe(ok)} over ${ok.tlsVersion ?? 'no TLS'} (expected HTTP 200 over TLSv1.3)`,
    );
  }
  const none = await probe(host, port, pki, serverName, null);
  const rogue = await probe(host, port, pki, serverName, pki.rogue);
  for (const [what, p] of [
    ['no client certificate', none],
    ['a certificate from another CA', rogue],
  ] as const) {
    if (!refused(p)) {
      throw new Error(`${name}: mTLS precondition failed: the second hop accepted ${what} (HTTP 200)`);
    }
  }
  return (
    `verified: TLSv1.3 with the client certificate; refused without one (${describe(none)}) ` +
    `and with another CA's (${describe(rogue)})`
  );
}

/** GET http://admin/metrics, bounded to 5 s. */
export function fetchMetrics(admin: string): Promise<string> {
  const colon = admin.lastIndexOf(':');
  const host = admin.slice(0, colon).replace(/^\[|\]$/g, '');
  const port = Number(admin.slice(colon + 1));
  return new Promise((resolve, reject) => {
    const req = request({ host, port, path: '/metrics', agent: false, timeout: 5000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () =>
        res.statusCode === 200
          ? resolve(body)
          : reject(new Error(`${admin}/metrics: HTTP ${res.statusCode}`)),
      );
    });
    req.on('timeout', () => req.destroy(new Error(`${admin}/metrics: no answer within 5 s`)));
    req.on('error', reject);
    req.end();
  });
}

export const MESH_CONNECTIONS = 'trellis_mesh_connections_total';

export interface TrellisMtls {
  /** true: mesh connections seen; false: the metric exists and is 0; null: no such metric yet. */
  readonly verified: boolean | null;
  readonly meshConnections: number | null;
  readonly inboundRequests: number;
  /** Of those, the ones that arrived as HTTP/2 (the proxies' own protocol between them). */
  readonly inboundH2Requests: number;
  readonly summary: string;
}

/**
 * What the server-side trellis proxy's metrics say about its inbound traffic: the requests it
 * received (0 means the load did not take the two-hop path at all) and its inbound mesh (mTLS)
 * connections. The mesh metric is new; while the proxy does not export it the answer is
 * "not verified" and the pair is still measured (as plaintext, today).
 */
export function trellisMtls(metricsText: string): TrellisMtls {
  const samples = parsePrometheusText(metricsText);
  const inboundRequests = sumSamples(samples, 'trellis_request_total', { direction: 'inbound' });
  const inboundH2Requests = sumSamples(samples, 'trellis_request_total', {
    direction: 'inbound',
    protocol: 'h2',
  });
  const present = samples.some((s) => s.name === MESH_CONNECTIONS);
  if (!present) {
    return {
      verified: null,
      meshConnections: null,
      inboundRequests,
      inboundH2Requests,
      summary: `not verified (the server-side proxy exports no ${MESH_CONNECTIONS}: plaintext between the proxies)`,
    };
  }
  const meshConnections = sumSamples(samples, MESH_CONNECTIONS, { direction: 'inbound' });
  return {
    verified: meshConnections > 0,
    meshConnections,
    inboundRequests,
    inboundH2Requests,
    summary:
      meshConnections > 0
        ? `verified: ${meshConnections} inbound mTLS connection(s) on the server-side proxy`
        : `NOT in use: ${MESH_CONNECTIONS}{direction="inbound"} is 0 on the server-side proxy`,
  };
}
