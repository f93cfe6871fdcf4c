// The control-plane scale benchmark: a Destination gRPC server (src/control/destination/server.ts)
// over an in-memory watcher (control-plane-watcher.ts) holding many endpoints, watched by many
// subscribers (the proxy's own DestinationResolver over a few shared gRPC connections). Endpoint
// changes are applied one at a time and each is timed from the change to the LAST subscriber that
// receives it; the server's peak memory is read from its own process. Three processes, so the
// server's CPU and memory are measured alone:
//   orchestrator (this file, default role) -> server child (--role server, pinned to CPU 0)
//                                          -> subscribers child (--role subscribers, CPU 1)
// They talk over Node's IPC channel; both children stamp times with performance.timeOrigin +
// performance.now(), a clock shared by every process on the machine.
//
//   node bench/control-plane.ts [--endpoints 10000] [--services 100] [--subscribers 1000]
//                               [--changes 50] [--channels 8] [--quick] [--out bench/results]
//
// Writes <out>/control-plane-latest.json and prints a markdown table. run.ts can call
// runControlPlaneBench(parseControlPlaneOptions([])) and controlPlaneMarkdown(result).
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { startDestinationServer } from '../src/control/destination/server.ts';
import type { Endpoint, ServicePortKey, Update } from '../src/control/discovery/watcher.ts';
import { DestinationResolver } from '../src/proxy/resolve/destination-client.ts';
import { targetKey } from '../src/core/target.ts';
import { MemoryWatcher } from './control-plane-watcher.ts';
import { percentiles, type Percentiles } from './http-response.ts';
import { machineInfo } from './options.ts';
import { machineBusyFraction, sampleRss, tail, treeCpuSeconds, treeMemoryMb } from './processes.ts';
import type { Target } from './report.ts';
import { BENCH_DIR, repoNode } from './targets.ts';

export interface ControlPlaneOptions {
  readonly endpoints: number;
  readonly services: number;
  readonly subscribers: number;
  readonly changes: number;
  /** gRPC connections the subscribers share. */
  readonly channels: number;
  /** The whole run stops after this many seconds (changes not applied by then are skipped). */
  readonly timeLimitS: number;
  readonly quick: boolean;
  readonly outDir: string;
}

/** One change: where it went, how many watch streams had to hear of it, and how long it took. */
export interface ChangeSample {
  readonly id: number;
  readonly scope: 'one service' | 'shared service';
  readonly kind: 'add' | 'remove';
  readonly watchers: number;
  readonly received: number;
  /** From the change to the first / the last watcher receiving it; NaN when some never did. */
  readonly firstMs: number;
  readonly lastMs: number;
  /** How long the server's synchronous fan-out (translate + write to every stream) took. */
  readonly serverFanOutMs: number;
  /** CPU the subscribers process spent from the change to its last delivery (decoding, mostly). */
  readonly subscribersCpuMs: number;
}

export interface ControlPlaneResult {
  readonly startedAt: string;
  readonly elapsedS: number;
  readonly settings: Omit<ControlPlaneOptions, 'outDir'> & { readonly watchStreams: number };
  readonly machine: ReturnType<typeof machineInfo> & { readonly busyPercentAtStart: number };
  /** From starting the subscribers to every stream holding its first reset. */
  readonly allResetsMs: number;
  readonly lastMsToLastWatcher: {
    readonly all: Percentiles;
    readonly oneService: Percentiles;
    readonly shared: Percentiles;
  };
  readonly changes: readonly ChangeSample[];
  readonly server: {
    readonly openStreams: number;
    /** Watcher listener calls that threw inside the server (should be 0). */
    readonly listenerErrors: number;
    readonly rssBeforeSubscribersMb: number;
    readonly rssWithSubscribersMb: number;
    /** Max of the process's VmHWM and the RSS sampled every 100 ms. */
    readonly peakRssMb: number;
    readonly peakPrivateMb: number;
    readonly cpuSecondsSubscribing: number;
    readonly cpuSecondsChanging: number;
  };
  readonly streamErrors: number;
  readonly targets: readonly Target[];
  readonly warnings: readonly string[];
}

const NAMESPACE = 'bench';
const SERVICE_PORT = 8080;
const TARGET_P99_MS = 100;
const TARGET_RSS_MB = 365;
const wallMs = (): number => performance.timeOrigin + performance.now();
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const serviceKey = (s: number): ServicePortKey => ({
  namespace: NAMESPACE,
  name: `svc-${String(s).padStart(3, '0')}`,
  port: SERVICE_PORT,
});
const watchPath = (s: number): string =>
  `${serviceKey(s).name}.${NAMESPACE}.svc.cluster.local:${SERVICE_PORT}`;

/** Endpoint number `index` as an address in 198.18.0.0/15 (never dialled). */
function addressOf(index: number): { host: string; port: number } {
  return { host: `198.${18 + (index >> 16)}.${(index >> 8) & 255}.${index & 255}`, port: SERVICE_PORT };
}

function endpointOf(index: number, service: number): Endpoint {
  const name = serviceKey(service).name;
  return {
    address: addressOf(index),
    weight: 1,
    labels: {
      pod: `${name}-${index.toString(36)}`,
      zone: `zone-${index % 3}`,
      'bench-endpoint': String(index),
    },
    meshed: true,
    identity: `spiffe://cluster.local/ns/${NAMESPACE}/sa/${name}`,
    protocolHint: 'h2',
  };
}

/** Service 0 is shared: every subscriber watches it, and one of the others (~10 per service). */
export function servicesWatchedBy(subscriber: number, services: number): number[] {
  return services <= 1 ? [0] : [0, 1 + (subscriber % (services - 1))];
}

interface PlannedChange {
  readonly id: number;
  readonly service: number;
  readonly kind: 'add' | 'remove';
  /** The endpoint added or removed: numbered after the initial ones, so each change is unique. */
  readonly index: number;
}

/** Add/remove pairs (each added endpoint is removed next); about one pair in ten on the shared service. */
export function changePlan(
  o: Pick<ControlPlaneOptions, 'changes' | 'services' | 'endpoints'>,
): PlannedChange[] {
  const pairs = Math.ceil(o.changes / 2);
  const shared = o.services <= 1 ? pairs : Math.max(1, Math.round(pairs / 10));
  const plan: PlannedChange[] = [];
  for (let p = 0; p < pairs; p++) {
    const isShared = Math.floor(((p + 1) * shared) / pairs) > Math.floor((p * shared) / pairs);
    const service = isShared ? 0 : 1 + ((p * 7) % (o.services - 1));
    const index = o.endpoints + p;
    plan.push({ id: 2 * p, service, kind: 'add', index });
    if (2 * p + 1 < o.changes) plan.push({ id: 2 * p + 1, service, kind: 'remove', index });
  }
  return plan;
}

// ---- the children ------------------------------------------------------------------------

type Message = { readonly type: string; readonly [key: string]: unknown };
const send = (m: Message): void => void process.send?.(m);

async function serverRole(o: ControlPlaneOptions): Promise<void> {
  const watcher = new MemoryWatcher();
  for (let i = 0; i < o.endpoints; i++)
    watcher.addEndpoints(serviceKey(i % o.services), [endpointOf(i, i % o.services)]);
  const server = await startDestinationServer({ watcher, listen: '127.0.0.1:0' });
  process.on('disconnect', () => process.exit(0));
  process.on('message', (m: Message) => {
    if (m.type === 'apply') {
      const change = m['change'] as PlannedChange;
      const key = serviceKey(change.service);
      const t0 = wallMs();
      if (change.kind === 'add') watcher.addEndpoints(key, [endpointOf(change.index, change.service)]);
      else watcher.removeEndpoints(key, [targetKey(addressOf(change.index))]);
      send({ type: 'applied', id: change.id, t0, t1: wallMs(), watchers: watcher.subscribersOf(key) });
    } else if (m.type === 'stats') {
      const errors = watcher.listenerErrors;
      send({ type: 'stats', openStreams: server.service.openStreams, listenerErrors: errors });
    } else if (m.type === 'stop') {
      void server.close().finally(() => process.exit(0));
    }
  });
  send({ type: 'listening', port: server.port, endpoints: watcher.endpointCount });
}

async function subscribersRole(o: ControlPlaneOptions, port: number): Promise<void> {
  const started = wallMs();
  const channelOptions = { 'grpc.use_local_subchannel_pool': 1 }; // one TCP connection per resolver
  const resolvers = Array.from(
    { length: o.channels },
    () =>
      new DestinationResolver({ address: `127.0.0.1:${port}`, channelOptions, backoff: { initialMs: 500 } }),
  );
  let expecting: {
    change: PlannedChange;
    address: string;
    count: number;
    first: number;
    cpu: NodeJS.CpuUsage;
  } | null = null;
  let streams = 0;
  let resets = 0;
  let errors = 0;
  const watchersOf = new Map<number, number>();
  const onUpdate = (service: number, update: Update, at: number): void => {
    const e = expecting;
    if (e === null || e.change.service !== service || update.kind !== e.change.kind) return;
    const hit =
      update.kind === 'add'
        ? update.endpoints.some((ep) => targetKey(ep.address) === e.address)
        : update.kind === 'remove' && update.addresses.includes(e.address);
    if (!hit) return;
    if (e.count++ === 0) e.first = at;
    if (e.count === watchersOf.get(service)) {
      const used = process.cpuUsage(e.cpu);
      const cpuMs = (used.user + used.system) / 1000;
      send({ type: 'received', id: e.change.id, first: e.first, last: at, count: e.count, cpuMs, errors });
      expecting = null;
    }
  };
  for (let i = 0; i < o.subscribers; i++) {
    const resolver = resolvers[i % resolvers.length]!;
    for (const service of servicesWatchedBy(i, o.services)) {
      watchersOf.set(service, (watchersOf.get(service) ?? 0) + 1);
      streams++;
      let first = true;
      resolver.resolve(
        watchPath(service),
        (update) => {
          const at = wallMs();
          if (first) {
            first = false;
            if (++resets === streams) send({ type: 'ready', ms: at - started, streams, errors });
          }
          onUpdate(service, update, at);
        },
        () => errors++,
      );
    }
  }
  process.on('disconnect', () => process.exit(0));
  process.on('message', (m: Message) => {
    if (m.type === 'expect') {
      const change = m['change'] as PlannedChange;
      const address = targetKey(addressOf(change.index));
      expecting = { change, address, count: 0, first: NaN, cpu: process.cpuUsage() };
      send({ type: 'expecting', id: change.id });
    } else if (m.type === 'stop') {
      for (const r of resolvers) r.close();
      send({ type: 'stopped', errors });
      setTimeout(() => process.exit(0), 50);
    }
  });
}

// ---- the orchestrator --------------------------------------------------------------------

interface Child {
  readonly name: string;
  readonly process: ChildProcess;
  /** The next message of `type` that `accept` takes (earlier unaccepted ones are dropped). */
  next(type: string, timeoutMs: number, accept?: (m: Message) => boolean): Promise<Message>;
  stop(): Promise<void>;
}

const THIS_FILE = fileURLToPath(import.meta.url);

function startChild(name: string, cpu: number | undefined, args: readonly string[]): Child {
  const argv = [repoNode(), THIS_FILE, ...args];
  const [cmd, ...rest] = cpu === undefined ? argv : ['taskset', '-c', String(cpu), ...argv];
  const child = spawn(cmd!, rest, { stdio: ['ignore', 'pipe', 'pipe', 'ipc'] });
  let output = '';
  const keep = (chunk: Buffer): void => void (output = (output + chunk.toString('utf8')).slice(-16_384));
  child.stdout!.on('data', keep);
  child.stderr!.on('data', keep);
  const inbox: Message[] = [];
  const waiters = new Set<() => void>();
  let exited = false;
  const exit = new Promise<void>((resolve) => {
    child.once('exit', () => resolve());
    // A failed spawn never exits; a send on a closing IPC channel is harmless here.
    child.on('error', (err) => {
      output += `\n${err.message}`;
      if (child.pid === undefined) resolve();
    });
  });
  void exit.then(() => {
    exited = true;
    for (const wake of waiters) wake();
  });
  child.on('message', (m: Message) => {
    inbox.push(m);
    for (const wake of waiters) wake();
  });
  return {
    name,
    process: child,
    next(type, timeoutMs, accept = () => true) {
      return new Promise<Message>((resolve, reject) => {
        const check = (): void => {
          for (let i = 0; i < inbox.length; i++) {
            const m = inbox[i]!;
            if (m.type !== type) continue;
            inbox.splice(i--, 1);
            if (accept(m)) return done(() => resolve(m));
          }
          if (exited) done(() => reject(new Error(`${name} exited; output: ${tail(output, 600)}`)));
        };
        const timer = setTimeout(
          () => done(() => reject(new Error(`${name}: no "${type}" within ${timeoutMs} ms`))),
          timeoutMs,
        );
        const done = (finish: () => void): void => {
          clearTimeout(timer);
          waiters.delete(check);
          finish();
        };
        waiters.add(check);
        check();
      });
    },
    async stop() {
      if (exited) return;
      if (child.connected) child.send({ type: 'stop' });
      await Promise.race([exit, sleep(3000)]);
      if (!exited) child.kill('SIGKILL');
    },
  };
}

function canPin(): boolean {
  if (availableParallelism() < 2) return false;
  return spawnSync('taskset', ['-V'], { stdio: 'ignore', timeout: 5000 }).status === 0;
}

/** Runs the whole benchmark (both children started and stopped here) and returns its numbers. */
export async function runControlPlaneBench(o: ControlPlaneOptions): Promise<ControlPlaneResult> {
  const startedAt = new Date();
  const deadline = Date.now() + o.timeLimitS * 1000;
  const left = (capMs: number): number => Math.max(1000, Math.min(capMs, deadline - Date.now()));
  const pin = canPin();
  const busyPercentAtStart = Math.round((await machineBusyFraction(1000)) * 100);
  const common = ['--endpoints', o.endpoints, '--services', o.services, '--subscribers', o.subscribers];
  const args = (role: string, extra: (string | number)[] = []): string[] =>
    ['--role', role, ...common, '--channels', o.channels, ...extra].map(String);
  const children: Child[] = [];
  const killOnExit = (): void => children.forEach((c) => c.process.kill('SIGKILL'));
  process.on('exit', killOnExit);
  let rss: ReturnType<typeof sampleRss> | undefined;
  try {
    const server = startChild('control-plane server', pin ? 0 : undefined, args('server'));
    children.push(server);
    const listening = await server.next('listening', left(60_000));
    const pid = server.process.pid!;
    const rssBefore = treeMemoryMb(pid).rssMb;
    rss = sampleRss(pid, 100);
    const cpuStart = treeCpuSeconds(pid);
    log(`server on port ${String(listening['port'])} holds ${String(listening['endpoints'])} endpoints`);

    const subs = startChild(
      'subscribers',
      pin ? 1 : undefined,
      args('subscribers', ['--port', String(listening['port'])]),
    );
    children.push(subs);
    const ready = await subs.next('ready', left(180_000));
    const cpuSubscribed = treeCpuSeconds(pid);
    await sleep(500); // let the last resets' buffers settle before reading memory
    const rssWith = treeMemoryMb(pid).rssMb;
    log(`${String(ready['streams'])} watch streams got their reset in ${Math.round(Number(ready['ms']))} ms`);

    const samples: ChangeSample[] = [];
    const plan = changePlan(o);
    for (const change of plan) {
      if (Date.now() > deadline - 5000) {
        log(`time limit: ${plan.length - samples.length} changes skipped`);
        break;
      }
      samples.push(await measureChange(server, subs, change, left(10_000)));
      await sleep(20);
    }
    const cpuChanged = treeCpuSeconds(pid);
    server.process.send({ type: 'stats' });
    const stats = await server.next('stats', 5000);
    const peakRssMb = Math.max(rss.stop(), treeMemoryMb(pid).hwmMb);
    subs.process.send({ type: 'stop' });
    const stopped = await subs.next('stopped', 5000).catch(() => ({ type: 'stopped', errors: NaN }));
    const lastOf = (pick: (s: ChangeSample) => boolean): Percentiles =>
      percentiles(samples.filter(pick).map((s) => s.lastMs));
    const settings = { ...o, outDir: undefined, watchStreams: Number(ready['streams']) };
    const result = {
      startedAt: startedAt.toISOString(),
      elapsedS: (Date.now() - startedAt.getTime()) / 1000,
      settings,
      machine: { ...machineInfo(), busyPercentAtStart },
      allResetsMs: Number(ready['ms']),
      lastMsToLastWatcher: {
        all: lastOf(() => true),
        oneService: lastOf((s) => s.scope === 'one service'),
        shared: lastOf((s) => s.scope === 'shared service'),
      },
      changes: samples,
      server: {
        openStreams: Number(stats['openStreams']),
        listenerErrors: Number(stats['listenerErrors']),
        rssBeforeSubscribersMb: rssBefore,
        rssWithSubscribersMb: rssWith,
        peakRssMb,
        peakPrivateMb: rss.peakPrivateMb(),
        cpuSecondsSubscribing: cpuSubscribed - cpuStart,
        cpuSecondsChanging: cpuChanged - cpuSubscribed,
      },
      streamErrors: Number(stopped['errors']),
    };
    return { ...result, targets: judge(result), warnings: warningsOf(result, plan.length, pin) };
  } finally {
    rss?.stop();
    await Promise.all(children.map((c) => c.stop()));
    process.off('exit', killOnExit);
  }
}

async function measureChange(
  server: Child,
  subs: Child,
  change: PlannedChange,
  timeoutMs: number,
): Promise<ChangeSample> {
  const sameId = (m: Message): boolean => m['id'] === change.id;
  subs.process.send({ type: 'expect', change });
  await subs.next('expecting', 5000, sameId);
  server.process.send({ type: 'apply', change });
  const applied = await server.next('applied', 5000, sameId);
  const received = await subs.next('received', timeoutMs, sameId).catch(() => null);
  const t0 = Number(applied['t0']);
  return {
    id: change.id,
    scope: change.service === 0 ? 'shared service' : 'one service',
    kind: change.kind,
    watchers: Number(applied['watchers']),
    received: received === null ? 0 : Number(received['count']),
    firstMs: received === null ? NaN : Number(received['first']) - t0,
    lastMs: received === null ? NaN : Number(received['last']) - t0,
    serverFanOutMs: Number(applied['t1']) - t0,
    subscribersCpuMs: received === null ? NaN : Number(received['cpuMs']),
  };
}

type Measured = Omit<ControlPlaneResult, 'targets' | 'warnings'>;

function judge(r: Measured): Target[] {
  const p99 = r.lastMsToLastWatcher.all.p99;
  const missed = r.changes.some((c) => Number.isNaN(c.lastMs));
  return [
    {
      name: 'change to last subscriber, p99',
      goal: `<= ${TARGET_P99_MS} ms`,
      value: missed ? 'a change missed some watchers' : `${fmt(p99, 1)} ms`,
      pass: r.changes.length === 0 ? null : !missed && p99 <= TARGET_P99_MS,
    },
    {
      name: 'control plane peak RSS',
      goal: `<= ${TARGET_RSS_MB} MB (Linkerd 2021)`,
      value: `${fmt(r.server.peakRssMb, 1)} MB`,
      pass: r.server.peakRssMb <= TARGET_RSS_MB,
    },
  ];
}

function warningsOf(r: Measured, planned: number, pinned: boolean): string[] {
  const out: string[] = [];
  const busy = r.machine.busyPercentAtStart;
  if (busy > 25) out.push(`the machine was ${busy}% busy with other work at the start: expect noisy times`);
  if (!pinned) out.push('processes not pinned (fewer than 2 CPUs or no taskset): numbers are rough');
  if (r.changes.length < planned)
    out.push(`time limit reached: ${planned - r.changes.length} changes skipped`);
  for (const c of r.changes) {
    if (c.received < c.watchers)
      out.push(`change ${c.id}: not all of its ${c.watchers} watchers got it within 10 s`);
  }
  if (r.server.openStreams !== r.settings.watchStreams) {
    out.push(`the server held ${r.server.openStreams} streams, expected ${r.settings.watchStreams}`);
  }
  if (r.server.listenerErrors > 0) out.push(`${r.server.listenerErrors} server listener calls threw`);
  if (r.streamErrors > 0) out.push(`${r.streamErrors} watch streams failed and were retried`);
  return out;
}

const fmt = (v: number, digits: number): string => (Number.isFinite(v) ? v.toFixed(digits) : '-');

export function controlPlaneMarkdown(r: ControlPlaneResult): string {
  const s = r.settings;
  const row = (label: string, p: Percentiles, pick: (c: ChangeSample) => boolean): string => {
    const chosen = r.changes.filter(pick);
    const watchers =
      chosen.length === 0
        ? '-'
        : String(Math.round(chosen.reduce((n, c) => n + c.watchers, 0) / chosen.length));
    const first = percentiles(chosen.map((c) => c.firstMs).filter(Number.isFinite)).p50;
    const fanOut = percentiles(chosen.map((c) => c.serverFanOutMs)).p50;
    const clientCpu = percentiles(chosen.map((c) => c.subscribersCpuMs).filter(Number.isFinite)).p50;
    return `| ${label} | ${p.count} | ${watchers} | ${fmt(p.p50, 1)} | ${fmt(p.p99, 1)} | ${fmt(p.max, 1)} | ${fmt(first, 1)} | ${fmt(fanOut, 2)} | ${fmt(clientCpu, 1)} |`;
  };
  const lines = [
    `# Trellis control-plane scale benchmark, ${r.startedAt}`,
    '',
    `${s.endpoints} endpoints in ${s.services} services; ${s.subscribers} subscribers, each watching the shared ` +
      `service and one other (${s.watchStreams} Watch streams over ${s.channels} gRPC connections); ` +
      `every stream got its first reset within ${fmt(r.allResetsMs, 0)} ms. Times run from the change in the ` +
      'watcher to the last (first) watch stream receiving it, in the subscribers process.',
    '',
    '| changes in | changes | watchers each | p50 ms | p99 ms | max ms | first watcher p50 ms | server fan-out p50 ms | subscriber process CPU p50 ms |',
    '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
    row('one service', r.lastMsToLastWatcher.oneService, (c) => c.scope === 'one service'),
    row('the shared service', r.lastMsToLastWatcher.shared, (c) => c.scope === 'shared service'),
    row('all', r.lastMsToLastWatcher.all, () => true),
    '',
    '| server process | RSS MB |',
    '| --- | ---: |',
    `| before subscribers | ${fmt(r.server.rssBeforeSubscribersMb, 1)} |`,
    `| with ${s.watchStreams} streams | ${fmt(r.server.rssWithSubscribersMb, 1)} |`,
    `| peak (VmHWM) | ${fmt(r.server.peakRssMb, 1)} |`,
    `| peak private | ${fmt(r.server.peakPrivateMb, 1)} |`,
    '',
    `Server CPU: ${fmt(r.server.cpuSecondsSubscribing, 2)} s to serve the initial resets, ` +
      `${fmt(r.server.cpuSecondsChanging, 2)} s for ${r.changes.length} changes.`,
    '',
    '| target | goal | this run | result |',
    '| --- | --- | ---: | --- |',
    ...r.targets.map(
      (t) =>
        `| ${t.name} | ${t.goal} | ${t.value} | ${t.pass === null ? 'not measured' : t.pass ? 'PASS' : 'FAIL'} |`,
    ),
  ];
  if (r.warnings.length > 0) lines.push('', '## Warnings', '', ...r.warnings.map((w) => `- ${w}`));
  return lines.join('\n') + '\n';
}

// ---- options and entry -------------------------------------------------------------------

const DEFAULTS = {
  endpoints: 10_000,
  services: 100,
  subscribers: 1000,
  changes: 50,
  channels: 8,
  timeLimitS: 300,
};
const QUICK = { endpoints: 2000, services: 20, subscribers: 200, changes: 20, channels: 4, timeLimitS: 90 };

export function parseControlPlaneOptions(
  argv: readonly string[],
): ControlPlaneOptions & { role: string; port: number } {
  const { values } = parseArgs({
    args: [...argv],
    options: {
      endpoints: { type: 'string' },
      services: { type: 'string' },
      subscribers: { type: 'string' },
      changes: { type: 'string' },
      channels: { type: 'string' },
      'time-limit': { type: 'string' },
      quick: { type: 'boolean', default: false },
      out: { type: 'string' },
      role: { type: 'string', default: 'run' },
      port: { type: 'string', default: '0' },
    },
  });
  const base = values.quick ? QUICK : DEFAULTS;
  const int = (name: string, v: string | undefined, fallback: number, min: number, max: number): number => {
    const n = v === undefined ? fallback : Number(v);
    if (!Number.isInteger(n) || n < min || n > max)
      throw new Error(`--${name}: expected a whole number ${min}..${max}`);
    return n;
  };
  const services = int('services', values.services, base.services, 2, 999);
  return {
    endpoints: int('endpoints', values.endpoints, base.endpoints, services, 120_000),
    services,
    subscribers: int('subscribers', values.subscribers, base.subscribers, 1, 20_000),
    changes: int('changes', values.changes, base.changes, 1, 10_000),
    channels: int('channels', values.channels, base.channels, 1, 64),
    timeLimitS: int('time-limit', values['time-limit'], base.timeLimitS, 10, 3600),
    quick: values.quick,
    outDir: values.out ?? join(BENCH_DIR, 'results'),
    role: values.role,
    port: int('port', values.port, 0, 0, 65535),
  };
}

function log(msg: string): void {
  process.stderr.write(`[control-plane bench ${new Date().toISOString().slice(11, 19)}] ${msg}\n`);
}

async function main(): Promise<void> {
  const o = parseControlPlaneOptions(process.argv.slice(2));
  if (o.role === 'server') return serverRole(o);
  if (o.role === 'subscribers') return subscribersRole(o, o.port);
  const { role: _role, port: _port, ...options } = o;
  // Exiting runs runControlPlaneBench's exit hook, which kills the children.
  for (const signal of ['SIGINT', 'SIGTERM'] as const) process.once(signal, () => process.exit(130));
  const result = await runControlPlaneBench(options);
  mkdirSync(o.outDir, { recursive: true });
  writeFileSync(join(o.outDir, 'control-plane-latest.json'), JSON.stringify(result, null, 2) + '\n');
  process.stdout.write(controlPlaneMarkdown(result));
  log(`wrote ${join(o.outDir, 'control-plane-latest.json')}`);
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().catch((err: unknown) => {
    process.stderr.write(`control-plane bench: ${(err as Error).message}\n`);
    process.exit(1);
  });
}
