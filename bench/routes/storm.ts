// The retry storm: an upstream that answers 503 to everything, counting what it receives, behind a
// trellis pair whose route retries 503 with attempts 3 (four times the load if nothing bounded
// it). wrk drives a bounded load through the client-side proxy; the ratio of what the upstream
// received to what the client sent is held against 1.3x. The retry budget (20% of the last
// 10 s's requests plus a floor of 10 retries a second, i.e. 100 per 10 s window) bounds it at
// about 1.2 + 100 * windows / requests: a short run of a few hundred requests is dominated by the
// floor (200 requests: up to 1.7x), so wrk runs again (bounded) until MIN_REQUESTS were sent.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { BenchOptions } from '../options.ts';
import type { Tools } from '../targets.ts';
import type { Pair } from '../two-hop/contenders.ts';
import { runWrk, type WrkResult } from '../wrk.ts';
import { counter, waitForRoute } from './pair-access.ts';

/** Below this many client requests the budget's floor, not its ratio, decides the result. */
export const MIN_REQUESTS = 5000;
/** At most this many wrk runs of the storm's chunk length while fewer than MIN_REQUESTS were sent. */
const MAX_CHUNKS = 4;

export interface FailingUpstream {
  readonly port: number;
  /** Requests received so far. */
  received(): number;
  close(): Promise<void>;
}

/** An HTTP/1.1 server on 127.0.0.1 that answers every request 503 and counts them. */
export async function startFailingUpstream(): Promise<FailingUpstream> {
  let received = 0;
  const server: Server = createServer((req, res) => {
    received++;
    req.resume();
    res.writeHead(503, { 'content-type': 'text/plain', 'content-length': '12' });
    res.end('unavailable\n');
  });
  server.keepAliveTimeout = 60_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  return {
    port: (server.address() as AddressInfo).port,
    received: () => received,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

export interface StormResult {
  readonly durationS: number;
  readonly connections: number;
  /** wrk's completed requests. */
  readonly wrkRequests: number;
  /** trellis_request_total{direction="outbound"} growth on the client-side proxy. */
  readonly clientRequests: number;
  /** What the failing upstream received in the same time. */
  readonly upstreamRequests: number;
  /** trellis_retries_total growth on the client-side proxy. */
  readonly retried: number;
  readonly budgetExhausted: number;
  /** upstreamRequests / clientRequests. */
  readonly ratio: number;
  /** What the budget allows for this run: 1.2 + 100 per 10 s window touched / clientRequests. */
  readonly budgetBound: number;
  readonly non2xx: number;
  readonly socketErrors: number;
}

const OUTBOUND = { direction: 'outbound' } as const;

/** Waits until the storm route is in force (a first 503 is retried), then runs the storm. */
export async function runStorm(
  o: BenchOptions,
  tools: Tools,
  pair: Pair,
  admin: string,
  upstream: FailingUpstream,
  chunkS: number,
  quick: boolean,
): Promise<StormResult> {
  const retriedNow = () => counter(admin, 'trellis_retries_total', { ...OUTBOUND, outcome: 'retried' });
  const sendOne = () => fetch(`http://${pair.host}:${pair.port}/`).then((r) => r.arrayBuffer());
  await waitForRoute(
    pair,
    'the storm route (retry 503)',
    async () => (await retriedNow()) > 0,
    15_000,
    sendOne,
  );
  const read = async () => ({
    client: await counter(admin, 'trellis_request_total', OUTBOUND),
    retried: await retriedNow(),
    exhausted: await counter(admin, 'trellis_retries_total', { ...OUTBOUND, outcome: 'budget_exhausted' }),
    upstream: upstream.received(),
  });
  const before = await read();
  const url = `http://${pair.host}:${pair.port}/`;
  // wrk in chunks of `chunkS` until the client sent MIN_REQUESTS (at most MAX_CHUNKS chunks): on a
  // busy machine one chunk may fall short, and then the budget's floor would decide the ratio.
  const startedMs = Date.now();
  const chunks: WrkResult[] = [];
  let sent = 0;
  while (chunks.length < (quick ? 1 : MAX_CHUNKS) && (chunks.length === 0 || sent < MIN_REQUESTS)) {
    const chunk = {
      wrk: tools.wrk,
      url,
      cpu: o.loadCpu,
      threads: 1,
      connections: o.connections,
      durationS: chunkS,
    };
    chunks.push(await runWrk(chunk));
    sent = (await counter(admin, 'trellis_request_total', OUTBOUND)) - before.client;
  }
  // Requests wrk left in flight may still be retried (backoff 25-50 ms): let them land.
  await new Promise((r) => setTimeout(r, 1500));
  const after = await read();
  const clientRequests = after.client - before.client;
  const upstreamRequests = after.upstream - before.upstream;
  const elapsedS = (Date.now() - startedMs) / 1000;
  // The 10 s windows the run touched (the budget counts whole seconds, so one more for alignment).
  const windows = Math.ceil(elapsedS / 10) + 1;
  const sum = (f: (w: WrkResult) => number) => chunks.reduce((n, w) => n + f(w), 0);
  return {
    durationS: sum((w) => w.durationS),
    connections: o.connections,
    wrkRequests: sum((w) => w.requests),
    clientRequests,
    upstreamRequests,
    retried: after.retried - before.retried,
    budgetExhausted: after.exhausted - before.exhausted,
    ratio: clientRequests > 0 ? upstreamRequests / clientRequests : NaN,
    budgetBound: clientRequests > 0 ? 1.2 + (100 * windows) / clientRequests : NaN,
    non2xx: sum((w) => w.non2xx),
    socketErrors: sum((w) => w.socketErrors),
  };
}
