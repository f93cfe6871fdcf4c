// Tools for attacking a proxy from a test: an app that records every client-identity value it is
// given and every connection it gets, a bystander TCP server that must never be reached, and a raw
// client that writes bytes on a schedule and collects what comes back.
import http from 'node:http';
import net from 'node:net';
import tls from 'node:tls';
import { once } from 'node:events';

export interface RecordingApp {
  readonly port: number;
  /** The trellis-client-id value of each request, in order ('' when it had none). */
  readonly ids: string[];
  /** The trellis-client-id values found in request trailers. */
  readonly trailerIds: string[];
  /** TCP connections accepted so far, and those still open. */
  connections(): number;
  open(): number;
  close(): void;
}

/** An HTTP app answering `id=<trellis-client-id>` and recording what it saw. */
export async function startRecordingApp(): Promise<RecordingApp> {
  const ids: string[] = [];
  const trailerIds: string[] = [];
  let connections = 0;
  const sockets = new Set<net.Socket>();
  const server = http.createServer((req, res) => {
    const id = (req.headers['trellis-client-id'] as string | undefined) ?? '';
    ids.push(id);
    req.resume();
    req.on('end', () => {
      const trailer = req.trailers['trellis-client-id'];
      if (trailer !== undefined) trailerIds.push(trailer);
      res.end(`id=${id}`);
    });
  });
  server.on('connection', (s: net.Socket) => {
    connections++;
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    port: (server.address() as net.AddressInfo).port,
    ids,
    trailerIds,
    connections: () => connections,
    open: () => sockets.size,
    close() {
      server.close();
      server.closeAllConnections();
    },
  };
}

export interface Bystander {
  readonly port: number;
  connections(): number;
  close(): void;
}

/**
 * A TCP server that nothing should reach (the control plane, another proxy's admin, ...), or,
 * with a greeting, a server-first app (it speaks first, then echoes what it is sent).
 */
export async function startBystander(greeting = ''): Promise<Bystander> {
  let connections = 0;
  const sockets = new Set<net.Socket>();
  const server = net.createServer((s) => {
    connections++;
    sockets.add(s);
    s.on('error', () => {});
    s.on('close', () => sockets.delete(s));
    if (greeting !== '') {
      s.write(greeting);
      s.on('data', (d: Buffer) => s.write(d));
    } else s.resume();
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    port: (server.address() as net.AddressInfo).port,
    connections: () => connections,
    close() {
      server.close();
      for (const s of sockets) s.destroy();
    },
  };
}

export interface RawOptions {
  /** Milliseconds to wait after connecting before the first write. */
  readonly idleFirstMs?: number;
  /** Milliseconds between the writes. */
  readonly gapMs?: number;
  /** Half-close after the last write (default false). */
  readonly fin?: boolean;
  /** Give up (destroy) after this long (default 10 s). */
  readonly timeoutMs?: number;
  /** Resolve as soon as the reply matches. */
  readonly until?: RegExp;
}

export interface RawReply {
  readonly text: string;
  /** Milliseconds from connect until the server closed (or until `until` matched). */
  readonly ms: number;
  /** True when the server closed the connection (false: `until` matched or timed out). */
  readonly closed: boolean;
}

/** Writes `parts` over a plain or already-open socket on a schedule; collects the reply. */
export function rawExchange(
  connect: number | (() => net.Socket),
  parts: readonly (string | Buffer)[],
  opts: RawOptions = {},
): Promise<RawReply> {
  return new Promise((resolve) => {
    const s = typeof connect === 'number' ? net.connect({ host: '127.0.0.1', port: connect }) : connect();
    const started = Date.now();
    let text = '';
    let done = false;
    const finish = (closed: boolean) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      resolve({ text, ms: Date.now() - started, closed });
      s.destroy();
    };
    const timer = setTimeout(() => finish(false), opts.timeoutMs ?? 10_000);
    s.on('data', (d: Buffer) => {
      text += d.toString('latin1');
      if (opts.until?.test(text)) finish(false);
    });
    s.on('error', () => {});
    s.on('close', () => finish(true));
    const ready = s instanceof tls.TLSSocket ? 'secureConnect' : 'connect';
    s.once(ready, () => {
      let i = 0;
      const next = () => {
        if (done || s.destroyed) return;
        if (i === parts.length) {
          if (opts.fin === true) s.end();
          return;
        }
        s.write(parts[i++]!);
        setTimeout(next, opts.gapMs ?? 0);
      };
      setTimeout(next, opts.idleFirstMs ?? 0);
    });
  });
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** A request whose trellis-client-id claims someone it is not. */
export function forgedRequest(forged: string, extra = ''): string {
  return `GET /forged HTTP/1.1\r\nHost: app\r\ntrellis-client-id: ${forged}\r\n${extra}Connection: close\r\n\r\n`;
}

/**
 * A connector for rawExchange (or node:http2's createConnection): mTLS to 127.0.0.1:`port` as a
 * meshed peer with `leaf`, offering `alpn`, trusting `caPem` (the peer's name is not checked: the
 * proxies check identities, not names); from `localAddress` when given.
 */
export function mtlsTo(
  port: number,
  alpn: string,
  leaf: { readonly keyPem: string; readonly certPem: string },
  caPem: string,
  localAddress?: string,
): () => tls.TLSSocket {
  return () =>
    tls.connect({
      ...(localAddress === undefined
        ? { host: '127.0.0.1', port }
        : { socket: net.connect({ host: '127.0.0.1', port, localAddress }) }),
      key: leaf.keyPem,
      cert: leaf.certPem,
      ca: caPem,
      ALPNProtocols: [alpn],
      checkServerIdentity: () => undefined,
    });
}
