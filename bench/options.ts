// The benchmark's settings, from command-line flags or BENCH_* environment variables (flags win),
// and the check that the outside tools it drives are installed. The only place bench/ reads
// process.env.
import { accessSync, constants, readFileSync } from 'node:fs';
import { availableParallelism, cpus } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { BENCH_DIR, repoNode, type Tools } from './targets.ts';

export const ALL_PROXIES = ['direct', 'haproxy', 'nginx', 'trellis'] as const;
export type ProxyName = (typeof ALL_PROXIES)[number];

export interface BenchOptions {
  /** Measured wrk (throughput) seconds per target, over all rounds. */
  readonly durationS: number;
  /** Seconds of unmeasured wrk load before each measured run (JIT, pools, caches). */
  readonly warmupS: number;
  /** Fixed-rate seconds per target over all rounds (each round adds a 1 s warm-up of its own). */
  readonly latencyDurationS: number;
  /** The throughput and latency time of each target is split into this many interleaved rounds. */
  readonly rounds: number;
  readonly rate: number;
  readonly connections: number;
  readonly latencyConnections: number;
  readonly proxies: readonly ProxyName[];
  readonly opaque: boolean;
  /** Seconds to wait at most, before starting, for the machine to be quiet (0: don't wait). */
  readonly waitQuietS: number;
  readonly outDir: string;
  /** CPU for the proxy under test, and for the upstream + load generators (undefined: no pinning). */
  readonly proxyCpu: number | undefined;
  readonly loadCpu: number | undefined;
}

const HELP = `Usage: npm run bench -- [options]     (or: node bench/run.ts [options])

  --duration S            measured throughput seconds per target (BENCH_DURATION, default 12)
  --warmup S              unmeasured load before the 1st round   (BENCH_WARMUP, default 2)
  --latency-duration S    latency seconds per target             (BENCH_LATENCY_DURATION, default 12)
  --rounds N              rounds each run is split into          (BENCH_ROUNDS, default 6)
  --rate N                requests/s of the latency run          (BENCH_RATE, default 1000)
  --connections N         wrk connections                        (BENCH_CONNECTIONS, default 50)
  --only a,b              proxies: ${ALL_PROXIES.join(',')}  (BENCH_PROXIES, default all)
  --no-opaque             skip the opaque TCP scenario           (BENCH_OPAQUE=0)
  --wait-quiet S          wait up to S s for an idle machine     (BENCH_WAIT_QUIET, default 30; 0: no)
  --out DIR               results folder                         (BENCH_OUT, default bench/results)
  --quick                 short runs (3 s, warm-up 1 s) to check the harness works

  BENCH_TRELLIS_MAIN=PATH run trellis from this compiled main.js instead of bin/trellis
`;

export function parseOptions(argv: readonly string[], env: NodeJS.ProcessEnv): BenchOptions | 'help' {
  const { values } = parseArgs({
    args: [...argv],
    options: {
      duration: { type: 'string' },
      warmup: { type: 'string' },
      'latency-duration': { type: 'string' },
      rounds: { type: 'string' },
      rate: { type: 'string' },
      connections: { type: 'string' },
      only: { type: 'string' },
      'no-opaque': { type: 'boolean' },
      out: { type: 'string' },
      'wait-quiet': { type: 'string' },
      quick: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) return 'help';
  const quick = values.quick === true;
  const num = (flag: string | undefined, envName: string, fallback: number): number => {
    const raw = flag ?? env[envName];
    if (raw === undefined || raw === '') return fallback;
    const n = Number(raw.replace(/s$/, ''));
    if (!Number.isFinite(n) || n <= 0) {
      const source = flag !== undefined ? `--${envName.slice(6).toLowerCase().replace('_', '-')}` : envName;
      throw new Error(`${source} must be a positive number, got '${raw}'`);
    }
    return n;
  };
  const only = (values.only ?? env['BENCH_PROXIES'] ?? ALL_PROXIES.join(','))
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  for (const name of only) {
    if (!(ALL_PROXIES as readonly string[]).includes(name)) {
      throw new Error(`unknown proxy '${name}' (known: ${ALL_PROXIES.join(', ')})`);
    }
  }
  const pinned = availableParallelism() >= 2;
  return {
    durationS: num(values.duration, 'BENCH_DURATION', quick ? 3 : 12),
    warmupS: num(values.warmup, 'BENCH_WARMUP', quick ? 1 : 2),
    latencyDurationS: num(values['latency-duration'], 'BENCH_LATENCY_DURATION', quick ? 3 : 12),
    rounds: Math.round(num(values.rounds, 'BENCH_ROUNDS', 6)),
    rate: num(values.rate, 'BENCH_RATE', 1000),
    connections: Math.round(num(values.connections, 'BENCH_CONNECTIONS', 50)),
    latencyConnections: 32,
    proxies: ALL_PROXIES.filter((p) => only.includes(p)),
    opaque: values['no-opaque'] !== true && env['BENCH_OPAQUE'] !== '0',
    waitQuietS:
      values['wait-quiet'] === '0' || env['BENCH_WAIT_QUIET'] === '0'
        ? 0
        : num(values['wait-quiet'], 'BENCH_WAIT_QUIET', quick ? 5 : 30),
    outDir: values.out ?? env['BENCH_OUT'] ?? join(BENCH_DIR, 'results'),
    proxyCpu: pinned ? 0 : undefined,
    loadCpu: pinned ? 1 : undefined,
  };
}

export function helpText(): string {
  return HELP;
}

const TOOL_PACKAGES: Record<string, string> = {
  wrk: 'wrk',
  haproxy: 'haproxy',
  nginx: 'nginx-light (or nginx)',
  taskset: 'util-linux',
};

/** Finds the outside tools; throws one error naming every missing tool and what to install. */
export function findTools(env: NodeJS.ProcessEnv): Tools {
  const dirs = [...(env['PATH'] ?? '').split(':').filter(Boolean), '/usr/sbin', '/usr/bin', '/sbin'];
  const found: Record<string, string> = {};
  const missing: string[] = [];
  for (const tool of Object.keys(TOOL_PACKAGES)) {
    const path = dirs.map((d) => join(d, tool)).find(isExecutable);
    if (path) found[tool] = path;
    else missing.push(tool);
  }
  if (missing.length > 0) {
    const packages = missing.map((t) => TOOL_PACKAGES[t]!.split(' ')[0]).join(' ');
    throw new Error(
      `missing tool(s): ${missing.join(', ')}.\n` +
        `Install them (Debian/Ubuntu): apt-get install -y ${packages}\n` +
        missing.map((t) => `  ${t}: package ${TOOL_PACKAGES[t]}`).join('\n'),
    );
  }
  return {
    wrk: found['wrk']!,
    haproxy: found['haproxy']!,
    nginx: found['nginx']!,
    taskset: found['taskset']!,
    node: repoNode(),
    trellisMain: env['BENCH_TRELLIS_MAIN'] || undefined,
  };
}

function isExecutable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** What the machine is, for the results file (numbers from different machines don't compare). */
export function machineInfo(): { cpus: number; model: string; kernel: string } {
  let model = 'unknown';
  let kernel = 'unknown';
  try {
    model = /^model name\s*:\s*(.+)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1] ?? model;
    kernel = readFileSync('/proc/sys/kernel/osrelease', 'utf8').trim();
  } catch {
    // not Linux: leave unknown
  }
  return { cpus: cpus().length, model, kernel }; // cpus(): this process is pinned to one by now
}
