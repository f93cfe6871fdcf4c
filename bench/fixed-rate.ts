// An open-loop load generator at a fixed request rate (Debian's wrk is not wrk2, and h2load's
// --rps waits for a free connection before it starts the clock, which hides stalls). Requests are
// scheduled at exact times over N keep-alive HTTP/1.1 connections; a request that finds no free
// connection waits in a queue and its wait counts in its latency, so a proxy that stalls (a GC
// pause, a slow event loop) is charged for every request it delayed: no coordinated omission.
//
// Latency is measured from the moment the generator's timer picked the request up (at most ~1 ms
// after its scheduled time, because Node's timers have 1 ms resolution) to the last byte of the
// response. That lag belongs to the generator, not to the system under test, so it is left out of
// `latencyMs` and reported apart (`generatorLagMs`); `fromScheduleMs` includes it.
//
// Usage: node bench/fixed-rate.ts --url http://127.0.0.1:PORT/ [--rate 1000] [--duration 10]
//          [--warmup 1] [--connections 32] [--timeout-ms 2000]
// Prints one JSON line with the result on stdout.
import { connect, type Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { parseResponse, percentiles, type Percentiles } from './http-response.ts';

interface Options {
  readonly host: string;
  readonly port: number;
  readonly path: string;
  readonly rate: number;
  readonly durationS: number;
  readonly warmupS: number;
  readonly connections: number;
  readonly timeoutMs: number;
}

export interface FixedRateResult {
  readonly rate: number;
  readonly durationS: number;
  readonly connections: number;
  readonly scheduled: number;
  readonly completed: number;
  readonly errors: number;
  readonly timeouts: number;
  readonly non2xx: number;
  readonly achievedRps: number;
  readonly latencyMs: Percentiles;
  readonly fromScheduleMs: Percentiles;
  readonly generatorLagMs: Percentiles;
}

interface Pending {
  readonly index: number;
  readonly scheduledAt: number;
  readonly pickedAt: number;
}

interface Conn {
  socket: Socket;
  buf: Buffer;
  inFlight: Pending | undefined;
}

function run(o: Options): Promise<FixedRateResult> {
  const request = Buffer.from(`GET ${o.path} HTTP/1.1\r\nHost: ${o.host}:${o.port}\r\n\r\n`);
  const intervalMs = 1000 / o.rate;
  const warmupCount = Math.round(o.warmupS * o.rate);
  const total = warmupCount + Math.round(o.durationS * o.rate);
  const latency = new Float64Array(total).fill(NaN);
  const fromSchedule = new Float64Array(total).fill(NaN);
  const lag = new Float64Array(total).fill(NaN);
  const queue: Pending[] = [];
  const idle: Conn[] = [];
  const conns = new Set<Conn>();
  let next = 0;
  let finished = 0;
  let errors = 0;
  let timeouts = 0;
  let non2xx = 0;
  let measuredStart = 0;
  let measuredEnd = 0;
  let t0 = 0;
  let done = false;

  return new Promise((resolve) => {
    const complete = (c: Conn, ok: boolean, status: number): void => {
      const p = c.inFlight!;
      c.inFlight = undefined;
      const now = performance.now();
      finished++;
      if (ok && p.index >= warmupCount) {
        latency[p.index] = now - p.pickedAt;
        fromSchedule[p.index] = now - p.scheduledAt;
        lag[p.index] = p.pickedAt - p.scheduledAt;
        measuredEnd = now;
        if (status < 200 || status > 299) non2xx++;
      }
    };
    const dispatch = (): void => {
      while (queue.length > 0 && idle.length > 0) {
        // Oldest idle connection first, so that the load is spread over all of them.
        const c = idle.shift()!;
        if (c.socket.destroyed) continue;
        c.inFlight = queue.shift()!;
        c.socket.write(request);
      }
    };
    const open = (): void => {
      if (done) return;
      const c: Conn = {
        socket: connect({ host: o.host, port: o.port }),
        buf: Buffer.alloc(0),
        inFlight: undefined,
      };
      conns.add(c);
      c.socket.setNoDelay(true);
      c.socket.on('connect', () => {
        idle.push(c);
        dispatch();
      });
      c.socket.on('data', (chunk: Buffer) => {
        c.buf = c.buf.length === 0 ? chunk : Buffer.concat([c.buf, chunk]);
        if (!c.inFlight) return;
        const parsed = parseResponse(c.buf);
        if (parsed === 'incomplete') return;
        if (parsed === 'invalid') {
          errors++;
          complete(c, false, 0);
          c.socket.destroy();
          return;
        }
        c.buf = c.buf.subarray(parsed.length);
        complete(c, true, parsed.status);
        if (parsed.close) {
          c.socket.destroy();
        } else {
          idle.push(c);
          dispatch();
        }
        maybeDone();
      });
      const onGone = (): void => {
        if (!conns.delete(c)) return;
        const i = idle.indexOf(c);
        if (i >= 0) idle.splice(i, 1);
        if (c.inFlight) {
          errors++;
          complete(c, false, 0);
        }
        if (!done && finished < total) setTimeout(open, errors > 1000 ? 100 : 0);
        maybeDone();
      };
      c.socket.on('error', onGone);
      c.socket.on('close', onGone);
    };
    const tick = (): void => {
      const now = performance.now();
      while (next < total && t0 + next * intervalMs <= now) {
        if (next === warmupCount) measuredStart = t0 + next * intervalMs;
        queue.push({ index: next, scheduledAt: t0 + next * intervalMs, pickedAt: now });
        next++;
      }
      dispatch();
      if (next < total) setTimeout(tick, Math.max(0, t0 + next * intervalMs - performance.now()));
    };
    const watchdog = setInterval(() => {
      const now = performance.now();
      for (const c of conns) {
        if (c.inFlight && now - c.inFlight.pickedAt > o.timeoutMs) {
          timeouts++;
          errors++;
          complete(c, false, 0);
          c.socket.destroy();
        }
      }
      // Requests still queued past the timeout also fail (no connection could take them).
      while (queue.length > 0 && now - queue[0]!.pickedAt > o.timeoutMs) {
        queue.shift();
        finished++;
        timeouts++;
        errors++;
      }
      maybeDone();
    }, 100);
    const hardStop = setTimeout(finish, (o.warmupS + o.durationS) * 1000 + o.timeoutMs + 5000);
    function maybeDone(): void {
      if (finished >= total) finish();
    }
    function finish(): void {
      if (done) return;
      done = true;
      clearInterval(watchdog);
      clearTimeout(hardStop);
      for (const c of conns) c.socket.destroy();
      const ok = latency.filter((v) => !Number.isNaN(v));
      const span = (measuredEnd - measuredStart) / 1000;
      resolve({
        rate: o.rate,
        durationS: o.durationS,
        connections: o.connections,
        scheduled: total - warmupCount,
        completed: ok.length,
        errors,
        timeouts,
        non2xx,
        achievedRps: span > 0 ? ok.length / span : 0,
        latencyMs: percentiles(ok),
        fromScheduleMs: percentiles(fromSchedule.filter((v) => !Number.isNaN(v))),
        generatorLagMs: percentiles(lag.filter((v) => !Number.isNaN(v))),
      });
    }
    for (let i = 0; i < o.connections; i++) open();
    t0 = performance.now() + 200; // let the connections open first
    setTimeout(tick, 200);
  });
}

function parseOptions(): Options {
  const { values } = parseArgs({
    options: {
      url: { type: 'string' },
      rate: { type: 'string', default: '1000' },
      duration: { type: 'string', default: '10' },
      warmup: { type: 'string', default: '1' },
      connections: { type: 'string', default: '32' },
      'timeout-ms': { type: 'string', default: '2000' },
    },
  });
  if (!values.url) throw new Error('--url http://HOST:PORT/PATH is required');
  const url = new URL(values.url);
  const num = (name: string, v: string): number => {
    const n = Number(v);
    if (!Number.isFinite(n) || n <= 0) throw new Error(`--${name} must be a positive number, got ${v}`);
    return n;
  };
  return {
    host: url.hostname.replace(/^\[|\]$/g, ''),
    port: Number(url.port || 80),
    path: url.pathname + url.search,
    rate: num('rate', values.rate),
    durationS: num('duration', values.duration),
    warmupS: Number(values.warmup),
    connections: Math.round(num('connections', values.connections)),
    timeoutMs: num('timeout-ms', values['timeout-ms']),
  };
}

if (import.meta.main) {
  run(parseOptions()).then(
    (result) => {
      process.stdout.write(JSON.stringify(result) + '\n');
      process.exit(0);
    },
    (err: unknown) => {
      process.stderr.write(`fixed-rate: ${(err as Error).message}\n`);
      process.exit(2);
    },
  );
}
