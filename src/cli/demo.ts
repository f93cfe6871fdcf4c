// `trellis demo` (what `npm start` runs): the proxy at work on one machine, with a live view.
// It starts two demo services from examples/demo-app/ ("web", which calls "quotes" for each
// request through its own outbound proxy) each beside a `trellis proxy`, sends them a steady
// stream of requests, and shows each workload's golden metrics from its proxy's /metrics.
// Everything runs on 127.0.0.1 with ports the kernel picks. Ctrl-C (or --duration) stops the
// traffic, then every child process, and waits for them; a child that dies stops the demo with a
// non-zero exit. There is no control plane yet: web is told where quotes' proxy is.
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import http from 'node:http';
import { fileURLToPath } from 'node:url';
import { ConfigError } from '../core/errors.ts';
import { type FlagSpec, formatHelp, parseFlags } from './flags.ts';
import { LiveView, type ViewMode, WorkloadWindow } from './live-view.ts';
import { parsePrometheusText } from './prom-parse.ts';

export const summary = 'a live demo: two services with their proxies, traffic and golden metrics';

const FLAGS: FlagSpec[] = [
  { name: 'duration', kind: 'number', help: 'stop after this many seconds (default: until Ctrl-C)' },
  { name: 'rate', kind: 'number', help: 'requests per second sent to web (default 30)' },
  { name: 'interval', kind: 'number', help: 'milliseconds between refreshes (default 1000)' },
  { name: 'window', kind: 'number', help: 'seconds of history behind each figure (default 10)' },
  { name: 'once', kind: 'boolean', help: 'print one table at the end (after --duration, default 5 s)' },
  { name: 'output', kind: 'string', help: 'table (default) or json (one JSON array per refresh); also -o' },
];

interface DemoOptions {
  durationMs: number | null;
  rate: number;
  intervalMs: number;
  windowMs: number;
  once: boolean;
  json: boolean;
}

function parseOptions(argv: string[]): DemoOptions {
  const expanded = argv.flatMap((a, i) => (a === '-o' && i < argv.length - 1 ? ['--output'] : [a]));
  const { values, rest } = parseFlags(expanded, FLAGS);
  if (rest.length > 0) throw new ConfigError('', `trellis demo: unexpected argument '${rest[0]}'`);
  const num = (name: string, fallback: number, min: number, max: number): number => {
    const v = (values.get(name) as number | undefined) ?? fallback;
    if (v < min || v > max) throw new ConfigError(`--${name}`, `must be between ${min} and ${max}`);
    return v;
  };
  const output = (values.get('output') as string | undefined) ?? 'table';
  if (output !== 'table' && output !== 'json') throw new ConfigError('--output', 'must be table or json');
  const once = values.get('once') === true;
  const duration = values.has('duration') || once ? num('duration', 5, 1, 86_400 * 365) : null;
  return {
    durationMs: duration === null ? null : duration * 1000,
    rate: num('rate', 30, 1, 1000),
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
  return runDemo(options, mode);
}

/** Where the demo services are: examples/ beside src/ (or dist/), for both layouts. */
const DEMO_APP_DIR = fileURLToPath(new URL('../../examples/demo-app/', import.meta.url));
/** The CLI this process runs from (src/cli/main.ts or dist/cli/main.js). */
const CLI = fileURLToPath(
  new URL(`./main${import.meta.url.endsWith('.ts') ? '.ts' : '.js'}`, import.meta.url),
);

/** `trellis proxy` beside an app, every listener on a free loopback port. */
function proxyArgs(appListen: string): string[] {
  const any = '127.0.0.1:0';
  const appPort = appListen.slice(appListen.lastIndexOf(':') + 1);
  // prettier-ignore
  return [
    'proxy', '--inbound-listen', any, '--outbound-listen', any, '--admin-listen', any,
    '--app-port', appPort, '--log-level', 'warn', '--drain-grace-ms', '2000',
  ];
}

type StartChild = (name: string, args: string[], script?: string) => DemoChild;

/**
 * quotes and web, then a proxy beside each; then web learns where its outbound proxy and quotes'
 * inbound proxy are. Resolves with where the traffic goes and where each proxy's /metrics is.
 */
async function startWorkloads(start: StartChild) {
  const exit = ['--exit-on-stdin-close'];
  const quotes = start('quotes', exit, DEMO_APP_DIR + 'quotes.ts');
  const web = start('web', exit, DEMO_APP_DIR + 'web.ts');
  const [quotesApp, webApp] = await Promise.all([quotes.ready, web.ready]);
  const quotesProxy = start('quotes proxy', proxyArgs(quotesApp.listen!));
  const webProxy = start('web proxy', proxyArgs(webApp.listen!));
  const [qp, wp] = await Promise.all([quotesProxy.ready, webProxy.ready]);
  web.proc.stdin!.write(JSON.stringify({ httpProxy: wp.outbound, quotes: qp.inbound }) + '\n');
  const up: [DemoChild, Record<string, string>][] = [
    [quotes, quotesApp],
    [web, webApp],
    [quotesProxy, qp],
    [webProxy, wp],
  ];
  for (const [child, ready] of up) {
    const where = Object.entries(ready).filter(([k]) => k !== 'event' && k !== 'service');
    note(`${child.name} is up (pid ${child.proc.pid}, ${where.map(([k, v]) => `${k} ${v}`).join(', ')})`);
  }
  return { webInbound: wp.inbound!, admins: { web: wp.admin!, quotes: qp.admin! } };
}

function note(text: string): void {
  process.stderr.write(`trellis demo: ${text}\n`);
}

async function runDemo(options: DemoOptions, mode: ViewMode): Promise<number> {
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
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  const onStdoutError = () => stop(0); // e.g. `trellis demo | head`
  process.stdout.on('error', onStdoutError);

  const start: StartChild = (name, args, script) => {
    const child = spawnDemoChild(name, script ?? CLI, args, (why) => {
      // Ctrl-C on a terminal reaches the children too: let our own handler mark the stop first.
      setTimeout(() => stop(1, `${why}; stopping the demo`), 200);
    });
    children.push(child);
    return child;
  };

  const view = new LiveView((text) => process.stdout.write(text), mode);
  const http1 = new http.Agent({ keepAlive: true, maxSockets: 4 });
  let timer: NodeJS.Timeout | undefined;
  let generator: TrafficGenerator | undefined;
  try {
    const startup = startWorkloads(start);
    startup.catch(() => {}); // when a stop wins the race below, a later failure is moot
    const started = await Promise.race([startup, stopped.then(() => null)]);
    if (started === null) return await stopped;

    const admins = Object.entries(started.admins);
    const windows = admins.map(([name]) => new WorkloadWindow(name, 'inbound', options.windowMs));
    const scrape = async () => {
      const at = Date.now();
      const pages = await Promise.all(admins.map(([, admin]) => fetchText(http1, admin, '/metrics')));
      windows.forEach((w, i) => w.record(pages[i] === null ? null : parsePrometheusText(pages[i]!), at));
    };
    const show = () => {
      const seconds = Math.round(options.windowMs / 1000);
      const title =
        mode === 'redraw'
          ? [
              `Trellis demo: ${options.rate} req/s -> web -> quotes, each behind its proxy. Ctrl-C to stop.`,
              `Inbound traffic of each workload over the last ${seconds} s, at ${clock()}:`,
              '',
            ]
          : [`${clock()}  inbound, last ${seconds} s`];
      view.show(
        windows.map((w) => w.row()),
        title,
      );
    };
    await scrape();
    generator = new TrafficGenerator(started.webInbound, options.rate);
    generator.start();
    const tick = async () => {
      await scrape();
      if (stopping) return;
      if (!options.once) show();
      timer = setTimeout(() => void tick(), options.intervalMs);
    };
    timer = setTimeout(() => void tick(), options.intervalMs);
    if (options.durationMs !== null) setTimeout(() => stop(0), options.durationMs).unref();
    const code = await stopped;
    if (options.once && code === 0) {
      await scrape();
      show();
    }
    return code;
  } catch (err) {
    stop(1, (err as Error).message);
    return 1;
  } finally {
    stopping = true;
    clearTimeout(timer);
    generator?.stop();
    view.close();
    if (stopReason !== undefined) note(stopReason);
    await stopChildren(children);
    if (children.length > 0) note(`stopped: the ${children.length} processes it started have exited`);
    http1.destroy();
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    process.stdout.off('error', onStdoutError);
  }
}

interface DemoChild {
  readonly name: string;
  readonly proc: ChildProcess;
  /** The child's ready line (a JSON object of addresses); rejects if it exits or is slow. */
  readonly ready: Promise<Record<string, string>>;
  /** Set once the demo stops it on purpose. */
  expected: boolean;
}

/** Node flags the children inherit (memory settings, say), without debugger or test flags. */
const NODE_FLAGS = process.execArgv.filter((a) => !/^--(inspect|debug|test|watch)/.test(a));

/** Starts `node script ...args`; `onUnexpectedExit` hears of an exit the demo did not ask for. */
function spawnDemoChild(
  name: string,
  script: string,
  args: readonly string[],
  onUnexpectedExit: (why: string) => void,
): DemoChild {
  const proc = spawn(process.execPath, [...NODE_FLAGS, script, ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
  let stderrTail = '';
  proc.stderr!.setEncoding('utf8');
  proc.stderr!.on('data', (d: string) => (stderrTail = (stderrTail + d).slice(-2000)));
  proc.stdin!.on('error', () => {}); // a child that is gone: its exit is reported below
  const describeExit = (code: number | null, signal: string | null) =>
    `${name} (pid ${proc.pid}) exited ${signal !== null ? `on ${signal}` : `with code ${code}`}` +
    (stderrTail.trim() === '' ? '' : `:\n${stderrTail.trimEnd()}`);
  const child: DemoChild = { name, proc, expected: false, ready: readyLine(name, proc, describeExit) };
  child.ready.catch(() => {}); // reported through the startup or onUnexpectedExit
  proc.once('exit', (code, signal) => {
    if (!child.expected) onUnexpectedExit(describeExit(code, signal));
  });
  proc.once('error', (err) => {
    if (!child.expected) onUnexpectedExit(`${name} could not start: ${err.message}`);
  });
  return child;
}

/** The first JSON line with "event":"ready" on the child's stdout (the rest is not read). */
function readyLine(
  name: string,
  proc: ChildProcess,
  describeExit: (code: number | null, signal: string | null) => string,
): Promise<Record<string, string>> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${name} was not ready within 30 s`)), 30_000);
    let out: string | null = '';
    proc.stdout!.setEncoding('utf8');
    proc.stdout!.on('data', (d: string) => {
      if (out === null) return;
      out += d;
      const lines = out.split('\n');
      out = lines.pop()!.slice(-10_000);
      for (const line of lines) {
        let parsed: Record<string, string> | null = null;
        try {
          parsed = JSON.parse(line) as Record<string, string>;
        } catch {
          continue; // not the ready line
        }
        if (parsed?.event !== 'ready') continue;
        out = null;
        clearTimeout(timer);
        resolve(parsed);
        return;
      }
    });
    proc.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(describeExit(code, signal)));
    });
  });
}

/** SIGTERM to every child still running, SIGKILL to any still there after 5 s; waits for all. */
async function stopChildren(children: readonly DemoChild[]): Promise<void> {
  const running = children.filter((c) => c.proc.exitCode === null && c.proc.signalCode === null);
  for (const c of children) c.expected = true;
  const exits = running.map((c) => once(c.proc, 'exit').catch(() => {}));
  for (const c of running) c.proc.kill('SIGTERM');
  const killer = setTimeout(() => {
    for (const c of running)
      if (c.proc.exitCode === null && c.proc.signalCode === null) c.proc.kill('SIGKILL');
  }, 5000);
  await Promise.all(exits);
  clearTimeout(killer);
}

function clock(): string {
  return new Date().toTimeString().slice(0, 8);
}

/** GET http://ADDRESS/path; the body, or null when it fails or takes over 2 s. */
function fetchText(agent: http.Agent, address: string, path: string): Promise<string | null> {
  const colon = address.lastIndexOf(':');
  return new Promise((resolve) => {
    const req = http.get(
      { agent, host: address.slice(0, colon), port: Number(address.slice(colon + 1)), path, timeout: 2000 },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => (body += d));
        res.on('end', () => resolve(res.statusCode === 200 ? body : null));
        res.on('error', () => resolve(null));
      },
    );
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(null));
  });
}

/**
 * Sends `rate` requests a second to web, spread over 10 ticks a second: 4 in 5 to / (a random
 * quote), 1 in 5 to /today. At most 64 requests are in flight; beyond that, ticks skip sending
 * rather than queue.
 */
class TrafficGenerator {
  private readonly address: string;
  private readonly rate: number;
  private readonly agent = new http.Agent({ keepAlive: true, maxSockets: 16 });
  private timer: NodeJS.Timeout | undefined;
  private budget = 0;
  private inFlight = 0;

  constructor(address: string, rate: number) {
    this.address = address;
    this.rate = rate;
  }

  start(): void {
    this.timer = setInterval(() => this.tick(), 100);
  }

  stop(): void {
    clearInterval(this.timer);
    this.agent.destroy();
  }

  private tick(): void {
    this.budget = Math.min(this.budget + this.rate / 10, this.rate);
    while (this.budget >= 1 && this.inFlight < 64) {
      this.budget -= 1;
      this.inFlight++;
      const path = Math.random() < 0.8 ? '/' : '/today';
      void fetchText(this.agent, this.address, path).then(() => this.inFlight--);
    }
  }
}
