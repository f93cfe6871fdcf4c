// The campaign's command line (the only place it reads its settings): how long and how many
// inputs, the seed, the memory bounds, which lanes, where results go, replaying a reproducer.
import { parseArgs } from 'node:util';

export interface FuzzOptions {
  readonly inputs: number;
  readonly seconds: number;
  readonly seed: number;
  readonly maxRssMb: number;
  readonly maxPrivateMb: number;
  readonly killRssMb: number;
  readonly lanes: RegExp | null;
  readonly results: string;
  readonly basePort: number;
  readonly netns: boolean;
  readonly inNetns: boolean;
  readonly replay: string | null;
  readonly repeat: number;
  readonly help: boolean;
}

export const USAGE = `Usage: npm run fuzz -- [options]   (or: node fuzz/run.ts [options] after npm run build)

Random and mutated HTTP/1 (upgrade offers and h2c smuggling too), HTTP/2 (frames, HPACK), TLS
ClientHellos and opaque streams against a mesh of two trellis proxies in front of an app that
records what reaches it (docs/security.md, "Fuzzing"). Stops at --inputs or --seconds, whichever comes first; exits 1 when it found anything.

  --inputs N          inputs to try (default 1000000; an input is an HTTP/1 request, an HTTP/2
                      frame, a TLS ClientHello or an opaque chunk; flood frames count apart)
  --seconds S         time limit for the batches, excluding start-up (default 580)
  --seed N            the run's seed (default: from the clock; printed, and in every reproducer)
  --max-rss-mb N      bound on each proxy's RSS and its high-water mark (default 256)
  --max-private-mb N  bound on each proxy's private memory, from smaps_rollup (default 192)
  --kill-rss-mb N     a proxy above this RSS is killed at once, to protect the machine (default 1024)
  --lanes REGEX       only the lanes whose name matches (e.g. 'server-inbound/mtls', '/h2$')
  --results DIR       where reproducers and the summary go (default fuzz/results)
  --base-port N       fixed ports from N (default 47100; 0: any free ports)
  --no-netns          as root, do not run in a network namespace of its own
  --replay FILE       send a reproducer's input again and check; exits 1 if it still finds
  --repeat N          with --replay: send it N times (a race may need a few; default 1)
  --help
`;

function int(value: string | undefined, name: string, fallback: number): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0) throw new Error(`--${name} must be a whole number >= 0, got "${value}"`);
  return n;
}

export function parseOptions(argv: readonly string[], now = Date.now()): FuzzOptions {
  const { values } = parseArgs({
    args: [...argv],
    strict: true,
    options: {
      inputs: { type: 'string' },
      seconds: { type: 'string' },
      seed: { type: 'string' },
      'max-rss-mb': { type: 'string' },
      'max-private-mb': { type: 'string' },
      'kill-rss-mb': { type: 'string' },
      lanes: { type: 'string' },
      results: { type: 'string' },
      'base-port': { type: 'string' },
      'no-netns': { type: 'boolean' },
      'in-netns': { type: 'boolean' },
      replay: { type: 'string' },
      repeat: { type: 'string' },
      help: { type: 'boolean' },
    },
  });
  return {
    inputs: int(values.inputs, 'inputs', 1_000_000),
    seconds: int(values.seconds, 'seconds', 580),
    seed: int(values.seed, 'seed', now % 1_000_000_007),
    maxRssMb: int(values['max-rss-mb'], 'max-rss-mb', 256),
    maxPrivateMb: int(values['max-private-mb'], 'max-private-mb', 192),
    killRssMb: int(values['kill-rss-mb'], 'kill-rss-mb', 1024),
    lanes: values.lanes === undefined ? null : new RegExp(values.lanes),
    results: values.results ?? 'fuzz/results',
    basePort: int(values['base-port'], 'base-port', 47100),
    netns: values['no-netns'] !== true,
    inNetns: values['in-netns'] === true,
    replay: values.replay ?? null,
    repeat: Math.max(1, int(values.repeat, 'repeat', 1)),
    help: values.help === true,
  };
}
