// `trellis demo` (what `npm start` runs): the mesh at work on one machine, with a live view.
// Two demos, each a DemoScenario:
//   --mesh    (demo-mesh.ts) the emojivoto example (examples/emojivoto: web, emoji, voting,
//             vote-bot) on the mesh: `trellis up` over a temporary state folder, `trellis apply`
//             of its Services, each service under `trellis run`; golden metrics from the control
//             plane (what `trellis stat` shows);
//   --simple  (demo-simple.ts) two services each beside a `trellis proxy`, no control plane;
//             golden metrics from the proxies' /metrics.
// This file parses the flags and drives a scenario: start it, refresh the live view (a redrawn
// screen on a terminal, lines otherwise, or JSON with -o json), and on Ctrl-C, SIGTERM or
// --duration stop its traffic, then every child process (waiting for them), then clean up. A
// child that dies stops the demo with a non-zero exit. Everything runs on 127.0.0.1.
import { ConfigError } from '../core/errors.ts';
import { type FlagSpec, formatHelp, parseFlags } from './flags.ts';
import { LiveView, type ViewMode, type WorkloadRow } from './live-view.ts';
import {
  CLI,
  note,
  spawnDemoChild,
  stopChildren,
  type DemoChild,
  type DemoScenario,
  type StartChild,
} from './demo-processes.ts';
import { MeshDemo } from './demo-mesh.ts';
import { outputFlag, outputOf } from './targeting.ts';
import { SimpleDemo } from './demo-simple.ts';
import { stopProcesses } from './supervisor-pipe.ts';
import { SUMMARIES } from './summaries.ts';

export const summary = SUMMARIES.demo;

/** Which demo runs without --mesh or --simple. */
const MESH_BY_DEFAULT = true;

const OUTPUTS = ['table', 'json'] as const;
const FLAGS: FlagSpec[] = [
  {
    name: 'mesh',
    kind: 'boolean',
    help: 'the emojivoto app on the mesh (control plane, trellis run): the default',
  },
  {
    name: 'simple',
    kind: 'boolean',
    help: 'the earlier demo: two services beside their proxies, no control plane',
  },
  { name: 'duration', kind: 'number', help: 'stop after this many seconds (default: until Ctrl-C)' },
  {
    name: 'rate',
    kind: 'number',
    help: 'requests per second sent to web (by the vote bot; default 10, at most 200; --simple: 30, at most 1000)',
  },
  { name: 'interval', kind: 'number', help: 'milliseconds between refreshes (default 1000)' },
  {
    name: 'window',
    kind: 'number',
    help: "with --simple: seconds of history behind each figure (default 10; the mesh demo shows the control plane's 10 s)",
  },
  { name: 'once', kind: 'boolean', help: 'print one table at the end (after --duration, default 5 s)' },
  { ...outputFlag(OUTPUTS), help: 'table (default) or json (one JSON array per refresh)' },
];

interface DemoOptions {
  mesh: boolean;
  durationMs: number | null;
  rate: number;
  intervalMs: number;
  windowMs: number;
  once: boolean;
  json: boolean;
}

function parseOptions(argv: string[]): DemoOptions {
  const { values, rest } = parseFlags(argv, FLAGS);
  if (rest.length > 0) throw new ConfigError('', `trellis demo: unexpected argument '${rest[0]}'`);
  if (values.get('mesh') === true && values.get('simple') === true) {
    throw new ConfigError('--mesh', 'give --mesh or --simple, not both');
  }
  const mesh = values.get('mesh') === true || (MESH_BY_DEFAULT && values.get('simple') !== true);
  const num = (name: string, fallback: number, min: number, max: number): number => {
    const v = (values.get(name) as number | undefined) ?? fallback;
    if (v < min || v > max) throw new ConfigError(`--${name}`, `must be between ${min} and ${max}`);
    return v;
  };
  const output = outputOf(values, OUTPUTS);
  const once = values.get('once') === true;
  const duration = values.has('duration') || once ? num('duration', 5, 1, 86_400 * 365) : null;
  return {
    mesh,
    durationMs: duration === null ? null : duration * 1000,
    rate: num('rate', mesh ? 10 : 30, 1, mesh ? 200 : 1000),
    intervalMs: num('interval', 1000, 100, 60_000),
    windowMs: num('window', 10, 1, 3600) * 1000,
    once,
    json: output === 'json',
  };
}

export async function run(argv: string[]): Promise<number> {
  if (argv.includes('--help') || argv.includes('-h')) {
    const usage = 'Usage: trellis demo [options]\n\n' + summary + '.';
    process.stdout.write(formatHelp(usage, FLAGS) + '\n');
    return 0;
  }
  const options = parseOptions(argv);
  const mode: ViewMode = options.json
    ? 'json'
    : process.stdout.isTTY && options.durationMs === null
      ? 'redraw'
      : 'lines';
  const scenario = options.mesh ? new MeshDemo(options.rate) : new SimpleDemo(options.rate, options.windowMs);
  return runDemo(options, mode, scenario);
}

async function runDemo(options: DemoOptions, mode: ViewMode, scenario: DemoScenario): Promise<number> {
  const children: DemoChild[] = [];
  let stopping = false;
  let stopReason: string | undefined; // told after the terminal is back from the live view
  let resolveStop!: (code: number) => void;
  const stopped = new Promise<number>((resolve) => (resolveStop = resolve));
  const stop = (code: number, why?: string) => {
    if (stopping) return;
    stopping = true;
    stopReason = why;
    resolveStop(code);
  };
  const onSignal = () => {
    if (stopping) for (const c of children) c.proc.kill('SIGKILL'); // a second Ctrl-C: no waiting
    stop(0);
  };
  // SIGHUP: the terminal went away; clean up as for Ctrl-C.
  const signals = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;
  for (const s of signals) process.on(s, onSignal);
  const onStdoutError = () => stop(0); // e.g. `trellis demo | head`, or a terminal gone
  const onStderrError = () => {}; // notes that cannot be written must not stop the cleanup
  process.stdout.on('error', onStdoutError);
  process.stderr.on('error', onStderrError);

  const start: StartChild = (name, script, args, spawnOptions) => {
    // A start that goes on after a stop (Ctrl-C while starting) must not leave new processes.
    if (stopping) throw new Error('the demo is stopping');
    const child = spawnDemoChild(
      name,
      script ?? CLI,
      args,
      (why) => {
        // Ctrl-C on a terminal reaches the children too: let our own handler mark the stop first.
        setTimeout(() => stop(1, `${why}; stopping the demo`), 200);
      },
      spawnOptions,
    );
    children.push(child);
    return child;
  };

  const view = new LiveView((text) => process.stdout.write(text), mode);
  let timer: NodeJS.Timeout | undefined;
  const show = (rows: WorkloadRow[]) => view.show(rows, scenario.title(mode === 'redraw'));
  try {
    const startup = scenario.start(start);
    startup.catch(() => {}); // when a stop wins the race below, a later failure is moot
    const started = await Promise.race([startup.then(() => true), stopped.then(() => false)]);
    if (!started) return await stopped;

    const tick = async () => {
      const rows = await scenario.rows();
      if (stopping) return;
      if (!options.once) show(rows);
      timer = setTimeout(() => void tick(), options.intervalMs);
    };
    timer = setTimeout(() => void tick(), options.intervalMs);
    if (options.durationMs !== null) setTimeout(() => stop(0), options.durationMs).unref();
    const code = await stopped;
    if (options.once && code === 0) show(await scenario.rows());
    return code;
  } catch (err) {
    stop(1, (err as Error).message);
    return 1;
  } finally {
    stopping = true;
    clearTimeout(timer);
    scenario.stopTraffic();
    view.close();
    if (stopReason !== undefined) note(stopReason);
    await stopChildren(children);
    // Makes sure processes the children started are gone too (a child killed before it could
    // stop its own, say).
    const strays = await stopProcesses(scenario.strays(), 3000);
    if (strays > 0) note(`stopped ${strays} processes that its children left running`);
    if (children.length > 0) note(`stopped: the ${children.length} processes it started have exited`);
    await scenario.cleanup();
    for (const s of signals) process.off(s, onSignal);
    process.stdout.off('error', onStdoutError);
    process.stderr.off('error', onStderrError);
  }
}
