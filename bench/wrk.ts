// Runs wrk (closed-loop, HTTP/1.1 keep-alive, saturating) pinned to the load-generator CPU and
// reads its summary. Throughput is the number the report compares; errors make a run suspect.
import { startPinned, stop, tail } from './processes.ts';

export interface WrkResult {
  readonly requests: number;
  readonly durationS: number;
  readonly rps: number;
  /** Only on rounds combined: the median round's req/s (rps is then the best round's). */
  readonly rpsMedian?: number;
  readonly socketErrors: number;
  readonly non2xx: number;
  readonly timeouts: number;
  /** wrk's own latency percentiles under saturation (ms); not the fixed-rate latency. */
  readonly saturatedLatencyMs: { p50: number; p90: number; p99: number };
}

export interface WrkOptions {
  /** Path of the wrk binary. */
  readonly wrk: string;
  readonly url: string;
  readonly cpu: number | undefined;
  readonly threads: number;
  readonly connections: number;
  readonly durationS: number;
}

export async function runWrk(o: WrkOptions): Promise<WrkResult> {
  const argv = [
    o.wrk,
    `-t${o.threads}`,
    `-c${o.connections}`,
    `-d${Math.max(1, Math.round(o.durationS))}s`,
    '--latency',
    '--timeout',
    '2s',
    o.url,
  ];
  const p = startPinned('wrk', o.cpu, argv);
  const limit = setTimeout(() => void stop(p), (o.durationS + 15) * 1000);
  const code = await p.exited;
  clearTimeout(limit);
  const out = p.output();
  if (code !== 0) throw new Error(`wrk exited with ${code}: ${tail(out)}`);
  return parseWrk(out);
}

/** Parses wrk's text summary (wrk 4.x with --latency). */
export function parseWrk(out: string): WrkResult {
  const requestsMatch = /(\d+) requests in ([\d.]+)(us|ms|s|m)\b/.exec(out);
  const rpsMatch = /Requests\/sec:\s+([\d.]+)/.exec(out);
  if (!requestsMatch || !rpsMatch) throw new Error(`cannot read wrk output: ${tail(out)}`);
  const unit = { us: 1e-6, ms: 1e-3, s: 1, m: 60 }[requestsMatch[3] as 'us' | 'ms' | 's' | 'm'];
  const sock = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
  const non2xx = /Non-2xx or 3xx responses: (\d+)/.exec(out);
  return {
    requests: Number(requestsMatch[1]),
    durationS: Number(requestsMatch[2]) * unit,
    rps: Number(rpsMatch[1]),
    socketErrors: sock ? Number(sock[1]) + Number(sock[2]) + Number(sock[3]) + Number(sock[4]) : 0,
    timeouts: sock ? Number(sock[4]) : 0,
    non2xx: non2xx ? Number(non2xx[1]) : 0,
    saturatedLatencyMs: {
      p50: latencyLine(out, '50%'),
      p90: latencyLine(out, '90%'),
      p99: latencyLine(out, '99%'),
    },
  };
}

function latencyLine(out: string, label: string): number {
  const m = new RegExp(`^\\s+${label}\\s+([\\d.]+)(us|ms|s)\\s*$`, 'm').exec(out);
  if (!m) return NaN;
  const factor = { us: 1e-3, ms: 1, s: 1000 }[m[2] as 'us' | 'ms' | 's'];
  return Number(m[1]) * factor;
}
