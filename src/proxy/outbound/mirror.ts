// Request mirroring (the Gateway API's RequestMirror filter): a copy of a routed request goes to
// the mirror's backend Service, its answer is read and dropped, and the primary never waits for
// it. The copy is sent through this proxy's own outbound listener (HTTP/1 with an absolute URI,
// HTTP/2 with the backend as :authority), so it is discovered, balanced, secured with mTLS and
// counted like any request the app makes, with no second copy of that machinery here. It carries
// `trellis-mirrored: 1`, and a request carrying that header is not mirrored again (no loops
// through routes that mirror to each other).
//
// Bounded: at most MAX_MIRRORS_IN_FLIGHT copies at once (more are dropped), each abandoned
// MIRROR_TIMEOUT_MS after it started, however its mirror trickles; only requests whose body was
// kept whole are mirrored (up to 64 KiB, as for retries). A proxy without an outbound listener (only bound destinations) drops mirrors.
// Counted in trellis_route_mirrors_total{outcome="sent"|"dropped"|"failed"}.
import http from 'node:http';
import http2 from 'node:http2';
import type { Logger } from '../../core/log.ts';
import type { Target } from '../../core/target.ts';

export const MAX_MIRRORS_IN_FLIGHT = 64;
export const MIRROR_TIMEOUT_MS = 10_000;
/** The header a mirrored copy carries (and that stops it being mirrored again). */
export const MIRRORED_HEADER = 'trellis-mirrored';

export type MirrorOutcome = 'sent' | 'dropped' | 'failed';

/** One request to copy: what the primary sent upstream, after the route's filters. */
export interface MirroredRequest {
  readonly method: string;
  readonly pathAndQuery: string;
  /** Lower-case names; hop-by-hop fields and HTTP/2 pseudo-headers are left out here. */
  readonly headers: Readonly<Record<string, string | string[] | undefined>>;
  readonly body: readonly Buffer[];
  /** Sent as HTTP/2 (gRPC and h2 requests), else as HTTP/1.1. */
  readonly h2: boolean;
}

export interface RequestMirrorsOptions {
  /** The port of this proxy's outbound listener on 127.0.0.1, or null when it has none. */
  readonly outboundPort: () => number | null;
  readonly log: Logger;
  readonly count: (outcome: MirrorOutcome) => void;
  /** How long a copy may take in all (default MIRROR_TIMEOUT_MS; tests shorten it). */
  readonly timeoutMs?: number;
}

const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'transfer-encoding',
  'upgrade',
  'host',
  'te',
  'http2-settings',
  'content-length',
]);

export class RequestMirrors {
  private readonly opts: RequestMirrorsOptions;
  private inFlight = 0;
  private readonly agent = new http.Agent({ keepAlive: true, maxSockets: MAX_MIRRORS_IN_FLIGHT });
  private session: http2.ClientHttp2Session | null = null;
  private warnedNoListener = false;

  constructor(opts: RequestMirrorsOptions) {
    this.opts = opts;
  }

  /** Counts `n` mirrors that cannot be sent (their request's body was not kept whole). */
  drop(n: number): void {
    for (let i = 0; i < n; i++) this.opts.count('dropped');
  }

  /** Sends a copy of `request` to each of `targets`; never throws, never waits. */
  send(targets: readonly Target[], request: MirroredRequest): void {
    for (const target of targets) {
      try {
        this.sendOne(target, request);
      } catch (err) {
        this.opts.log.debug('request mirror failed', { err });
        this.opts.count('failed');
      }
    }
  }

  private sendOne(target: Target, request: MirroredRequest): void {
    const port = this.opts.outboundPort();
    if (port === null) {
      if (!this.warnedNoListener) {
        this.warnedNoListener = true;
        this.opts.log.warn(
          'request mirrors need the outbound listener; this proxy has none, mirrors are dropped',
        );
      }
      this.opts.count('dropped');
      return;
    }
    if (this.inFlight >= MAX_MIRRORS_IN_FLIGHT) {
      this.opts.count('dropped');
      return;
    }
    const headers: Record<string, string | string[]> = {};
    for (const [name, value] of Object.entries(request.headers)) {
      if (value === undefined || name.startsWith(':') || HOP_BY_HOP.has(name)) continue;
      headers[name] = value;
    }
    headers[MIRRORED_HEADER] = '1';
    const authority = `${target.host}:${target.port}`;
    this.inFlight++;
    let finished = false;
    let abandon: () => void = () => undefined;
    // The whole copy, not each silence: a mirror answering a byte at a time keeps its slot no longer.
    const timer = setTimeout(() => abandon(), this.opts.timeoutMs ?? MIRROR_TIMEOUT_MS);
    timer.unref();
    const done = (outcome: MirrorOutcome) => {
      if (finished) return;
      finished = true;
      clearTimeout(timer);
      this.inFlight--;
      this.opts.count(outcome);
    };
    abandon = request.h2
      ? this.sendH2(port, authority, request, headers, done)
      : this.sendH1(port, authority, request, headers, done);
  }

  private sendH1(
    port: number,
    authority: string,
    request: MirroredRequest,
    headers: Record<string, string | string[]>,
    done: (outcome: MirrorOutcome) => void,
  ): () => void {
    const req = http.request(
      {
        host: '127.0.0.1',
        port,
        method: request.method,
        path: `http://${authority}${request.pathAndQuery}`,
        headers: { ...headers, host: authority },
        agent: this.agent,
      },
      (res) => {
        res.resume();
        res.once('end', () => done('sent'));
        res.once('error', () => done('failed'));
      },
    );
    req.once('error', () => done('failed'));
    for (const chunk of request.body) req.write(chunk);
    req.end();
    return () => {
      req.destroy(new Error('mirror timed out'));
      done('failed');
    };
  }

  private sendH2(
    port: number,
    authority: string,
    request: MirroredRequest,
    headers: Record<string, string | string[]>,
    done: (outcome: MirrorOutcome) => void,
  ): () => void {
    let session = this.session;
    if (session === null || session.closed || session.destroyed) {
      session = http2.connect(`http://127.0.0.1:${port}`);
      session.on('error', (err) => this.opts.log.debug('request mirror session failed', { err }));
      session.once('close', () => {
        if (this.session === session) this.session = null;
      });
      session.unref();
      this.session = session;
    }
    const stream = session.request({
      ...headers,
      ':method': request.method,
      ':path': request.pathAndQuery,
      ':authority': authority,
    });
    stream.once('error', () => done('failed'));
    stream.once('close', () => done(stream.rstCode === http2.constants.NGHTTP2_NO_ERROR ? 'sent' : 'failed'));
    stream.resume();
    for (const chunk of request.body) stream.write(chunk);
    stream.end();
    return () => {
      stream.close(http2.constants.NGHTTP2_CANCEL);
      done('failed');
    };
  }

  close(): void {
    this.agent.destroy();
    this.session?.destroy();
    this.session = null;
  }
}
