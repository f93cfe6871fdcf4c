// One workload of `trellis run` while it runs: its proxy and its app as child processes, its
// registration (a lease, run-registration.ts) and its workload token, kept alive together.
//
// - The proxy starts first (every listener on a free loopback port), then the app with the proxy's
//   addresses in its environment. The proxy gets a pipe from this process (supervisor-pipe.ts)
//   that names the app's process group: when this process dies, even by SIGKILL, the proxy stops
//   that group and exits, and the registration, no longer renewed, expires.
// - A proxy or app that exits is started again after a crash-loop backoff (run-restart.ts) as the
//   restart policy says (--restart: on-failure by default; the proxy is restarted unless never),
//   the proxy on the same addresses so that the app's proxy settings stay right, and with what the
//   control file says then (the control plane may have restarted elsewhere, with other tracing).
//   The workload is ready (an endpoint) only while its app accepts connections and its proxy runs.
// - SIGINT/SIGTERM/SIGHUP go to the app's whole process group (a second one: SIGKILL); once the
//   app has exited, the registration is withdrawn and the proxy stopped. `trellis run` exits with
//   the app's exit code (128 + the signal number when a signal killed it) and says why in one
//   line on stderr.
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { connect } from 'node:net';
import { constants } from 'node:os';
import { fileURLToPath } from 'node:url';
import { spiffeId } from '../core/spiffe.ts';
import { readyLine } from './ready-line.ts';
import { WorkloadRegistration } from './run-registration.ts';
import {
  describeExit,
  type ExitStatus,
  RestartBackoff,
  type RestartPolicy,
  shouldRestart,
} from './run-restart.ts';
import { type JoinedService, removeCreatedService } from './run-service.ts';
import { resolveCommand, signalApp, spawnApp } from './run-app.ts';
import { quietPipe, signalGroup, SUPERVISOR_FD, tellAppGroup } from './supervisor-pipe.ts';
import { WorkloadToken } from './workload-token.ts';
import { controlFilePath, type ControlFile, readControlFile } from '../api/control-file.ts';

export interface WorkloadOptions {
  readonly name: string;
  readonly namespace: string;
  readonly serviceAccount: string;
  readonly mesh: boolean;
  readonly appPort: number;
  readonly root: string;
  readonly upstreams: readonly { target: string; localPort: number }[];
  readonly proxyLogLevel: string;
  /** The registration's lease (default WorkloadRegistration.LEASE_MS). */
  readonly leaseMs?: number;
  readonly command: readonly string[];
  readonly restart: RestartPolicy;
}

/** The CLI this process runs from (src/cli/main.ts or dist/cli/main.js). */
const CLI = fileURLToPath(
  new URL(`./main${import.meta.url.endsWith('.ts') ? '.ts' : '.js'}`, import.meta.url),
);
/** What bin/trellis sets for a proxy (see there): one malloc arena, eager trimming. */
const PROXY_MALLOC_ENV = { MALLOC_ARENA_MAX: '1', MALLOC_TRIM_THRESHOLD_: '65536' };
/** Node flags the proxy inherits (memory settings, say), without debugger or test flags. */
const NODE_FLAGS = process.execArgv.filter((a) => !/^--(inspect|debug|test|watch)/.test(a));
/** After this long without the app's port open, `trellis run` says so (once per start). */
const SLOW_PORT_MS = 10_000;

type Addresses = Record<string, string>;

export class WorkloadSupervisor {
  readonly #options: WorkloadOptions;
  /** The control file as last read: when the proxy last started (kept while there is none). */
  #control: ControlFile;
  readonly #service: JoinedService;
  readonly #instance: string;
  readonly #registration: WorkloadRegistration;
  readonly #appBackoff = new RestartBackoff();
  readonly #proxyBackoff = new RestartBackoff();
  #token: WorkloadToken | null = null;
  #proxy: ChildProcess | null = null;
  #proxyStartedAt = 0;
  /** The proxy's bound addresses, kept across its restarts. */
  #addresses: Addresses | null = null;
  #app: ChildProcess | null = null;
  #appStartedAt = 0;
  #appReady = false;
  #everReady = false;
  #restartTimer: NodeJS.Timeout | null = null;
  #signals = 0;
  /**
   * Why the workload is stopping, once it is: a signal, or a failure with the exit code to use
   * instead of the app's.
   */
  #stopping: { reason: string; signal?: NodeJS.Signals; code?: number } | null = null;
  #finishing = false;
  #done!: (code: number) => void;

  constructor(options: WorkloadOptions, control: ControlFile, service: JoinedService) {
    this.#options = options;
    this.#control = control;
    this.#service = service;
    this.#instance = `${options.name}-${process.pid}`;
    this.#registration = new WorkloadRegistration(
      options.root,
      options.namespace,
      this.#instance,
      note,
      options.leaseMs,
    );
  }

  /** Runs the workload until it ends; resolves with the exit code. */
  async run(): Promise<number> {
    const done = new Promise<number>((resolve) => (this.#done = resolve));
    const forward = (signal: NodeJS.Signals): void => this.#onSignal(signal);
    process.on('SIGINT', forward);
    process.on('SIGTERM', forward);
    process.on('SIGHUP', forward); // a closed terminal must not orphan the app or the proxy
    try {
      if (this.#options.mesh) this.#token = await WorkloadToken.start(this.#options, this.#instance, note);
      const first = await this.#startProxy();
      if (first !== null) return await this.#finish(1, first);
      if (this.#stopping !== null) return await this.#finish(this.#stoppedCode(), this.#stopping.reason);
      const inbound = portOf(this.#addresses!.inbound!);
      const identity = this.#options.mesh
        ? {
            identity: spiffeId(
              this.#control.trustDomain ?? 'cluster.local',
              this.#options.namespace,
              this.#options.serviceAccount,
            ),
          }
        : {};
      await this.#registration.set({
        service: this.#options.name,
        address: '127.0.0.1',
        port: inbound,
        ports: this.#service.targetNames.map((name) => ({ name, port: inbound })),
        appPort: this.#options.appPort,
        meshed: this.#options.mesh,
        ...identity,
        ready: false,
        admin: this.#addresses!.admin!,
      });
      this.#startApp();
      return await done;
    } catch (error) {
      return await this.#finish(1, (error as Error).message);
    } finally {
      process.off('SIGINT', forward);
      process.off('SIGTERM', forward);
      process.off('SIGHUP', forward);
    }
  }

  #onSignal(signal: NodeJS.Signals): void {
    this.#signals++;
    this.#stopping ??= { reason: `stopped by ${signal}`, signal };
    if (this.#restartTimer !== null) {
      clearTimeout(this.#restartTimer);
      this.#restartTimer = null;
    }
    if (this.#app !== null)
      signalApp(this.#app, this.#signals > 1 ? 'SIGKILL' : signal); // twice: no more waiting
    else if (this.#addresses !== null) void this.#finish(this.#stoppedCode(), this.#stopping.reason);
    // else: the proxy is still starting; run() sees #stopping once it is ready or failed
  }

  /** The exit code of a workload stopped while its app was not running. */
  #stoppedCode(): number {
    const stopping = this.#stopping;
    return stopping?.code ?? 128 + (stopping?.signal === undefined ? 0 : signalNumber(stopping.signal));
  }

  /**
   * Starts the proxy (on the addresses it had, after the first time) and waits for its ready line;
   * null when it is ready, else why it failed.
   */
  async #startProxy(): Promise<string | null> {
    // Where the control plane is now, and how it wants spans exported: `trellis up` may have
    // restarted on other ports since (the file is missing while it is stopped: the last one stays).
    this.#control = (await readControlFile(this.#options.root)) ?? this.#control;
    if (this.#finishing) return 'the workload is stopping';
    const proxy = spawn(process.execPath, [...NODE_FLAGS, CLI, ...this.#proxyArgs()], {
      stdio: ['ignore', 'pipe', 'inherit', 'pipe'],
      env: { ...process.env, ...PROXY_MALLOC_ENV },
      // Its own process group: Ctrl-C on a terminal reaches `trellis run`, which stops the app
      // first; the proxy serves until the app is gone.
      detached: true,
    });
    quietPipe(proxy);
    this.#proxyStartedAt = Date.now();
    let addresses: Addresses;
    try {
      addresses = await readyLine(proxy, {
        what: 'the proxy',
        onExit: (code, signal) => `the proxy ${describeExit({ code, signal })} before it was ready`,
      });
    } catch (error) {
      await stopProcess(proxy);
      return (error as Error).message;
    }
    if (this.#finishing) {
      await stopProcess(proxy); // the workload ended while it started
      return 'the workload is stopping';
    }
    this.#addresses ??= addresses;
    this.#proxy = proxy;
    proxy.once('exit', (code, signal) => this.#onProxyExit(proxy, { code, signal }));
    tellAppGroup(proxy, this.#app?.pid ?? null);
    return null;
  }

  #proxyArgs(): string[] {
    const o = this.#options;
    const at = (name: string): string => this.#addresses?.[name] ?? '127.0.0.1:0';
    // prettier-ignore
    const args = [
      'proxy', '--inbound-listen', at('inbound'), '--outbound-listen', at('outbound'), '--admin-listen', at('admin'),
      '--app-port', String(o.appPort), '--destination-address', this.#control.grpc,
      '--control-file', controlFilePath(o.root), '--supervisor-fd', String(SUPERVISOR_FD),
      '--workload', o.name, '--namespace', o.namespace,
      ...(this.#service.targetNames.length === 0 ? [] : ['--app-port-names', this.#service.targetNames.join(',')]),
      '--log-level', o.proxyLogLevel, '--drain-grace-ms', '2000',
      ...o.upstreams.flatMap((u) => ['--destination', `127.0.0.1:${u.localPort}=${u.target}`]),
    ];
    // Tracing as `trellis up` was told (its control file): every proxy it registers exports there.
    const tracing = this.#control.tracing;
    if (tracing !== undefined)
      args.push('--trace-collector', tracing.collector, '--trace-sample-ratio', String(tracing.sampleRatio));
    if (tracing?.tokenFile !== undefined) args.push('--trace-token-file', tracing.tokenFile);
    if (this.#token !== null) {
      // prettier-ignore
      args.push(
        '--identity-address', this.#control.grpc, '--identity-token-file', this.#token.path,
        '--trust-domain', this.#control.trustDomain ?? 'cluster.local',
        '--service-account', o.serviceAccount, '--policy-address', this.#control.grpc,
      );
    }
    return args;
  }

  #onProxyExit(proxy: ChildProcess, status: ExitStatus): void {
    if (proxy !== this.#proxy || this.#stopping !== null || this.#finishing) return;
    this.#proxy = null;
    this.#updateReady();
    const what = `the proxy ${describeExit(status)}`;
    if (this.#options.restart === 'never') {
      this.#stopping = { reason: `${what} (--restart=never)`, code: 1 };
      if (this.#app !== null) signalApp(this.#app, 'SIGTERM');
      else void this.#finish(1, this.#stopping.reason);
      return;
    }
    this.#restartProxy(what, Date.now() - this.#proxyStartedAt);
  }

  #restartProxy(what: string, ranMs: number): void {
    const delay = this.#proxyBackoff.next(ranMs);
    note(`${what}; starting it again in ${seconds(delay)} (restart ${this.#proxyBackoff.restarts})`);
    this.#restartTimer = setTimeout(() => {
      this.#restartTimer = null;
      if (this.#stopping !== null || this.#finishing) return;
      void this.#startProxy().then((failed) => {
        if (this.#stopping !== null) {
          if (this.#app === null) void this.#finish(this.#stoppedCode(), this.#stopping.reason);
          return;
        }
        if (failed !== null) this.#restartProxy(failed, 0);
        else this.#updateReady();
      });
    }, delay);
  }

  #startApp(): void {
    if (this.#stopping !== null) return;
    const [command, ...args] = this.#options.command as [string, ...string[]];
    const env = appEnvironment(this.#options, this.#addresses!);
    const file = resolveCommand(command, env.PATH);
    if (file === null) {
      void this.#finish(127, `cannot start the app: ${command}: command not found`);
      return;
    }
    const app = spawnApp(file, args, env);
    this.#app = app;
    this.#appStartedAt = Date.now();
    let started = true;
    app.once('error', (error) => {
      started = false;
      if (this.#app !== app) return;
      this.#app = null;
      void this.#finish(126, `cannot start the app: ${error.message}`);
    });
    app.once('exit', (code, signal) => this.#onAppExit(app, { code, signal }));
    if (app.pid === undefined) return; // 'error' follows
    if (this.#proxy !== null) tellAppGroup(this.#proxy, app.pid);
    const a = this.#addresses!;
    note(
      `${this.#options.name}.${this.#options.namespace}: app pid ${app.pid}, proxy pid ${this.#proxy?.pid} ` +
        `(inbound ${a.inbound}, outbound ${a.outbound}, admin ${a.admin})`,
    );
    const slow = setTimeout(() => {
      if (this.#app === app && !this.#appReady) {
        note(
          `the app has not opened port ${this.#options.appPort} after ${SLOW_PORT_MS / 1000} s (is --port right?)`,
        );
      }
    }, SLOW_PORT_MS);
    void waitForPort(this.#options.appPort, () => this.#app !== app).then((open) => {
      clearTimeout(slow);
      if (!open || !started || this.#app !== app) return;
      this.#appReady = true;
      this.#everReady = true;
      this.#updateReady();
    });
  }

  #onAppExit(app: ChildProcess, status: ExitStatus): void {
    if (app !== this.#app) return;
    this.#app = null;
    this.#appReady = false;
    // Whatever the app left running in its group goes with it (it may hold the app's port).
    signalGroup(app.pid!, 'SIGKILL');
    if (this.#proxy !== null) tellAppGroup(this.#proxy, null);
    const what = `the app ${describeExit(status)}`;
    if (this.#stopping !== null) {
      void this.#finish(this.#stopping.code ?? exitCode(status), `${this.#stopping.reason}; ${what}`);
      return;
    }
    this.#updateReady();
    if (!shouldRestart(this.#options.restart, status)) {
      void this.#finish(exitCode(status), what);
      return;
    }
    const delay = this.#appBackoff.next(Date.now() - this.#appStartedAt);
    note(`${what}; starting it again in ${seconds(delay)} (restart ${this.#appBackoff.restarts})`);
    this.#restartTimer = setTimeout(() => {
      this.#restartTimer = null;
      this.#startApp();
    }, delay);
  }

  /** Ready while the app accepts connections and the proxy runs. */
  #updateReady(): void {
    if (this.#finishing) return;
    void this.#registration.set({ ready: this.#appReady && this.#proxy !== null });
  }

  /** Withdraws everything, says why in one line, and resolves run() with `code`. */
  async #finish(code: number, reason: string): Promise<number> {
    if (this.#finishing) return code;
    this.#finishing = true;
    this.#stopping ??= { reason };
    if (this.#restartTimer !== null) clearTimeout(this.#restartTimer);
    if (this.#app !== null) await stopApp(this.#app);
    await this.#registration.withdraw();
    if (this.#service.created && !this.#everReady) {
      const { root, namespace, name } = this.#options;
      if (await removeCreatedService(root, namespace, name, this.#instance)) {
        note(`removed service ${name}.${namespace}: its app never became ready`);
      }
    }
    if (this.#proxy !== null) await stopProcess(this.#proxy);
    await this.#token?.stop();
    note(`exiting with ${code}: ${reason}`);
    this.#done(code);
    return code;
  }
}

/** The app's environment: ours, with its HTTP proxy and the TRELLIS_* addresses of its sidecar. */
function appEnvironment(options: WorkloadOptions, addresses: Addresses): NodeJS.ProcessEnv {
  const proxyUrl = `http://${addresses.outbound}`;
  return {
    ...process.env,
    HTTP_PROXY: proxyUrl,
    http_proxy: proxyUrl,
    grpc_proxy: proxyUrl,
    // Node's fetch and http honour HTTP_PROXY only with this (Node 24).
    NODE_USE_ENV_PROXY: '1',
    // Loopback stays direct (the proxy itself, the app's own port); service names go through it.
    NO_PROXY: 'localhost,127.0.0.1',
    no_proxy: 'localhost,127.0.0.1',
    TRELLIS_WORKLOAD: options.name,
    TRELLIS_NAMESPACE: options.namespace,
    TRELLIS_PROXY_OUTBOUND: addresses.outbound,
    TRELLIS_PROXY_INBOUND: addresses.inbound,
    TRELLIS_PROXY_ADMIN: addresses.admin,
  };
}

/** TCP connects to 127.0.0.1:port every 100 ms until one is accepted (true) or `gone()` (false). */
async function waitForPort(port: number, gone: () => boolean): Promise<boolean> {
  while (!gone()) {
    const accepted = await new Promise<boolean>((resolve) => {
      const socket = connect({ host: '127.0.0.1', port });
      socket.setTimeout(1000, () => socket.destroy());
      socket.once('connect', () => {
        socket.destroy();
        resolve(true);
      });
      socket.once('error', () => {}); // refused: not listening yet ('close' follows)
      socket.once('close', () => resolve(false));
    });
    if (accepted) return !gone();
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return false;
}

/** SIGTERM to the app's process group, SIGKILL after 5 s; resolves once the app has exited. */
function stopApp(app: ChildProcess): Promise<void> {
  return stopProcess(app, (signal) => signalApp(app, signal));
}

/** SIGTERM, then SIGKILL after 5 s (sent by `send`); resolves once the process has exited. */
async function stopProcess(
  proc: ChildProcess,
  send: (signal: NodeJS.Signals) => void = (signal) => proc.kill(signal),
): Promise<void> {
  if (proc.pid === undefined || proc.exitCode !== null || proc.signalCode !== null) return;
  const exited = once(proc, 'exit');
  send('SIGTERM');
  const killer = setTimeout(() => send('SIGKILL'), 5000);
  await exited;
  clearTimeout(killer);
}

/** A process's exit status as an exit code: its own, or 128 + the signal's number. */
function exitCode(status: ExitStatus): number {
  return status.code ?? 128 + (status.signal === null ? 0 : signalNumber(status.signal));
}

function signalNumber(signal: NodeJS.Signals): number {
  return constants.signals[signal] ?? 0;
}

function seconds(ms: number): string {
  return `${(ms / 1000).toFixed(1)} s`;
}

function portOf(address: string): number {
  return Number(address.slice(address.lastIndexOf(':') + 1));
}

export function note(text: string): void {
  process.stderr.write(`trellis run: ${text}\n`);
}
