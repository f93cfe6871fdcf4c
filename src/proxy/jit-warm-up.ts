// JIT warm-up: the proxy runs its own hot paths before its ready line, so that the first requests
// of its app do not run them cold. V8 starts every function in its interpreter and compiles it to
// optimized code only after some hundreds of calls; until then a request costs the proxy up to ten
// times its warm CPU (1.5 ms against 0.15 ms per request over the first ~150 requests, on the
// benchmark machine), and a burst of requests queues behind that: issue 10's tail latency, a fresh
// pair's first seconds at 30-50 ms p99. A native proxy has no such phase.
//
// How: a scratch pair, built in this process from the same classes as the real proxy, carries a
// bounded number of requests (`jitWarmUp.requests`, within `jitWarmUp.budgetMs`):
//   driver -> scratch client (a static-destination listener, and the HTTP proxy listener with
//   absolute-form requests) -> mTLS with the proxy's own identity -> scratch server (inbound
//   listener, inbound policy) -> a sink that answers every request with 200.
// The scratch runtimes have their own metrics, no access log, no tracer, no tap and no control
// plane (a fixed table resolves the scratch service), so nothing the real proxy reports sees a
// warm-up request, and no byte leaves loopback or reaches the app. Their listeners are on loopback
// ports of their own, for about a second; the scratch client's drop any connection that is not the
// driver's (its HTTP proxy listener would otherwise forward a stranger anywhere). V8 keeps what it learned and compiled with each function, not with the object
// it ran on: what the scratch pair compiled serves the real listeners. Everything the pair opened
// is closed before the real proxy says it is ready. HTTP/2 is not warmed: its forwarder is loaded
// on first use (node:http2 costs ~15 MB), and loading it for the warm-up would make every proxy
// pay that memory.
//
// Measured (docs/benchmark.md): the CPU the first 2 s of 1000 req/s cost above the next 2 s fell
// from ~400 ms to ~60 ms (both proxies of a pair); the warm-up itself costs ~0.5 s of CPU per
// proxy at start.
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import type { ProxyConfig } from './config.ts';
import { silentLogger, type Logger } from '../core/log.ts';
import { ConfigError } from '../core/errors.ts';
import { ProxyRuntime } from './runtime.ts';
import { startListener } from './listener.ts';
import { loadAuthorizer } from './mesh/setup.ts';
import type { MeshIdentity } from './mesh/wiring.ts';
import { StaticResolver, staticEndpoint } from './resolve/static.ts';
import type { WorkloadIdentity } from './identity/provider.ts';
import { targetKey, type Target } from '../core/target.ts';

/** Requests when neither the configuration nor TRELLIS_JIT_WARM_UP says. */
export const DEFAULT_JIT_WARM_UP_REQUESTS = 600;
/** The environment variable that sets the default for every proxy of a process tree (0: off). */
export const JIT_WARM_UP_ENV = 'TRELLIS_JIT_WARM_UP';

/** The scratch service's name: only the scratch client's fixed table knows it. */
const SERVICE: Target = { host: 'warm-up.trellis-warm-up', port: 80 };
/** Concurrent driver connections: bursts like an app's, so the multiplexed mesh path runs too. */
const CONNECTIONS = 8;
/** Every this-many-th connection goes through the HTTP proxy listener (absolute-form requests). */
const VIA_PROXY_EVERY = 4;
/** Every this-many-th connection sends POSTs with a body (the body paths), from the second on. */
const WITH_BODY_EVERY = 2;
const BODY = Buffer.alloc(64, 'w');
const SINK_RESPONSE = Buffer.from(
  'HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 2\r\n\r\nok',
);
const CONTENT_LENGTH = /\r\ncontent-length:[ \t]*(\d+)/i;

export interface JitWarmUpResult {
  /** Requests answered 200 through the scratch pair. */
  readonly requests: number;
  readonly ms: number;
  /** Why fewer than asked for were answered: out of time, no identity in time, or a failure. */
  readonly stopped?: 'budget' | 'no-identity' | 'error';
}

/**
 * How many warm-up requests: the configuration's, else TRELLIS_JIT_WARM_UP's (a whole number),
 * else the default. A malformed variable is a configuration error that names it.
 */
export function jitWarmUpRequests(configured: number | undefined, env: NodeJS.ProcessEnv): number {
  if (configured !== undefined) return configured;
  const raw = env[JIT_WARM_UP_ENV];
  if (raw === undefined || raw === '') return DEFAULT_JIT_WARM_UP_REQUESTS;
  if (!/^\d{1,6}$/.test(raw.trim())) {
    throw new ConfigError(JIT_WARM_UP_ENV, `expected a whole number of requests (0: off), got '${raw}'`);
  }
  return Number(raw.trim());
}

export interface JitWarmUpOptions {
  readonly requests: number;
  readonly budgetMs: number;
  readonly log: Logger;
  /** Called once the scratch pair listens, before the driver starts (tests: what a stranger sees). */
  readonly onListening?: (ports: ScratchPorts) => Promise<void>;
}

/**
 * Runs up to `requests` requests through a scratch pair (see above), for at most `budgetMs`.
 * Never throws: a warm-up that cannot run only leaves the first requests slower.
 */
export async function jitWarmUp(
  config: ProxyConfig,
  mesh: MeshIdentity | null,
  opts: JitWarmUpOptions,
): Promise<JitWarmUpResult> {
  const started = performance.now();
  const deadline = started + opts.budgetMs;
  const result = (answered: number, stopped?: JitWarmUpResult['stopped']): JitWarmUpResult => ({
    requests: answered,
    ms: Math.round(performance.now() - started),
    ...(stopped !== undefined ? { stopped } : {}),
  });
  if (mesh === null || !(await identityBefore(mesh.identity, opts.budgetMs))) return result(0, 'no-identity');
  const scratch = new ScratchPair(config, mesh);
  try {
    const ports = await scratch.start();
    await opts.onListening?.(ports);
    const answered = await drive(ports, opts.requests, deadline, scratch);
    return result(answered, answered < opts.requests ? 'budget' : undefined);
  } catch (err) {
    opts.log.debug('JIT warm-up failed', { error: err });
    return result(0, 'error');
  } finally {
    await scratch.close();
  }
}

/** Whether the identity has its first certificate within `ms`. */
async function identityBefore(identity: WorkloadIdentity, ms: number): Promise<boolean> {
  if (identity.current() !== null) return true;
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), ms)));
  try {
    return await Promise.race([identity.ready().then(() => true as const), late]);
  } catch {
    return false;
  } finally {
    clearTimeout(timer);
  }
}

/** The proxy's identity, lent to the scratch runtimes: theirs to use, not to close. */
function borrowed(identity: WorkloadIdentity): WorkloadIdentity {
  return {
    id: identity.id,
    current: () => identity.current(),
    ready: () => identity.ready(),
    onChange: (listener) => identity.onChange(listener),
    close: () => {},
  };
}

/** The proxy's configuration without anything that reaches outside the scratch pair. */
function scratchConfig(config: ProxyConfig): ProxyConfig {
  const { address: _discovery, ...discovery } = config.discovery;
  const { address: _identity, ...identity } = config.identity;
  const { collector: _collector, ...tracing } = config.tracing;
  const { listen: _tap, ...tap } = config.tap;
  const { appPort: _app, adminTokenFile: _token, ...rest } = config;
  return {
    ...rest,
    mode: 'explicit',
    appHost: '127.0.0.1',
    destinations: [],
    discovery,
    identity,
    // The inbound policy's code runs as for real; the scratch client is the proxy itself.
    policy: { default: 'all-authenticated' },
    tracing,
    tap,
    log: { ...config.log, access: 'off' },
    connections: { maxPerListener: 64, maxPerPeer: 0 },
  };
}

/** The scratch client's listeners: the static destination's and the HTTP proxy's. */
export interface ScratchPorts {
  readonly destination: number;
  readonly proxy: number;
}

class ScratchPair {
  private readonly runtimes: ProxyRuntime[] = [];
  private readonly servers: net.Server[] = [];
  /** The driver's connections: the only ones the scratch client's listeners serve. */
  readonly driverSockets = new Set<net.Socket>();
  private readonly config: ProxyConfig;
  private readonly mesh: MeshIdentity;

  constructor(config: ProxyConfig, mesh: MeshIdentity) {
    this.config = scratchConfig(config);
    this.mesh = mesh;
  }

  async start(): Promise<ScratchPorts> {
    const sink = net.createServer({ noDelay: true }, answerEveryRequest);
    this.servers.push(sink);
    const sinkPort = await listen(sink);
    const mesh = { identity: borrowed(this.mesh.identity), transport: this.mesh.transport };
    const serverConfig: ProxyConfig = { ...this.config, appPort: sinkPort };
    const server = new ProxyRuntime(
      serverConfig,
      silentLogger,
      null,
      mesh,
      await loadAuthorizer(serverConfig, silentLogger, {}),
    );
    this.runtimes.push(server);
    const app: Target = { host: '127.0.0.1', port: sinkPort };
    // Its peers are the scratch client's mesh connections, whose ports are not known ahead. Any
    // other peer meets the inbound policy (mTLS with an identity of the trust domain) and then
    // only the sink: it can reach nothing else, and learns nothing but "ok".
    server.inboundPort = await this.listen(
      server,
      'inbound',
      () => app,
      () => true,
    );
    const client = new ProxyRuntime(
      this.config,
      silentLogger,
      null,
      mesh,
      null,
      new StaticResolver({
        [targetKey(SERVICE)]: [
          staticEndpoint(`127.0.0.1:${server.inboundPort}`, {
            meshed: true,
            identity: this.mesh.identity.id,
          }),
        ],
      }),
    );
    this.runtimes.push(client);
    const fromDriver = (s: net.Socket): boolean => this.isDriverPeer(s);
    const destination = await this.listen(client, 'destination-0', () => SERVICE, fromDriver);
    const proxy = await this.listen(client, 'outbound', () => null, fromDriver);
    client.outboundPort = proxy;
    return { destination, proxy };
  }

  /** A connection from one of the driver's sockets (their local ports are bound before the accept). */
  private isDriverPeer(socket: net.Socket): boolean {
    for (const d of this.driverSockets) if (d.localPort === socket.remotePort) return true;
    return false;
  }

  private async listen(
    rt: ProxyRuntime,
    name: string,
    destination: () => Target | null,
    admit: (socket: net.Socket) => boolean,
  ): Promise<number> {
    const server = await startListener(rt, {
      name,
      direction: name === 'inbound' ? 'inbound' : 'outbound',
      host: '127.0.0.1',
      port: 0,
      protocol: 'auto',
      destination,
    });
    // Before the runtime's own handler: a stranger's connection is closed before it is read.
    server.prependListener('connection', (socket: net.Socket) => {
      if (!admit(socket)) socket.destroy();
    });
    this.servers.push(server);
    const port = (server.address() as AddressInfo).port;
    rt.ownPorts.add(port);
    return port;
  }

  async close(): Promise<void> {
    for (const s of this.driverSockets) s.destroy();
    for (const s of this.servers) s.close();
    await Promise.all(this.runtimes.map((rt) => rt.drain(0)));
  }
}

function listen(server: net.Server): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host: '127.0.0.1', port: 0 }, () => resolve((server.address() as AddressInfo).port));
  });
}

/**
 * Splits `buffered` into complete messages (head, then a content-length body), calling `onMessage`
 * with each head; returns what is left. Only for the scratch pair's own well-formed traffic.
 */
function takeMessages(buffered: string, onMessage: (head: string) => void): string {
  for (;;) {
    const end = buffered.indexOf('\r\n\r\n');
    if (end === -1) return buffered;
    const head = buffered.slice(0, end);
    const m = CONTENT_LENGTH.exec(head);
    const total = end + 4 + (m === null ? 0 : Number(m[1]));
    if (buffered.length < total) return buffered;
    buffered = buffered.slice(total);
    onMessage(head);
  }
}

/** The sink: a 200 for every request. */
function answerEveryRequest(socket: net.Socket): void {
  let buffered = '';
  socket.on('error', () => {});
  socket.on('data', (chunk: Buffer) => {
    buffered = takeMessages(buffered + chunk.toString('latin1'), () => socket.write(SINK_RESPONSE));
  });
}

/** Sends requests over CONNECTIONS keep-alive connections until `total` are answered or the deadline. */
async function drive(
  ports: ScratchPorts,
  total: number,
  deadline: number,
  pair: ScratchPair,
): Promise<number> {
  let sent = 0;
  let answered = 0;
  const connection = (index: number): Promise<void> =>
    new Promise((resolve) => {
      const viaProxy = index % VIA_PROXY_EVERY === VIA_PROXY_EVERY - 1;
      const withBody = index % WITH_BODY_EVERY === 1;
      const authority = targetKey(SERVICE);
      const path = `/trellis-warm-up/${index}`;
      const head =
        `${withBody ? 'POST' : 'GET'} ${viaProxy ? `http://${authority}${path}` : path} HTTP/1.1\r\n` +
        `host: ${authority}\r\nuser-agent: trellis-warm-up\r\naccept: */*\r\n` +
        (withBody ? `content-type: text/plain\r\ncontent-length: ${BODY.length}\r\n\r\n` : '\r\n');
      const request = withBody
        ? Buffer.concat([Buffer.from(head, 'latin1'), BODY])
        : Buffer.from(head, 'latin1');
      const socket = net.connect({
        host: '127.0.0.1',
        port: viaProxy ? ports.proxy : ports.destination,
        noDelay: true,
      });
      pair.driverSockets.add(socket);
      let buffered = '';
      const next = (): void => {
        if (sent >= total || performance.now() > deadline) {
          socket.end();
          resolve();
          return;
        }
        sent++;
        socket.write(request);
      };
      socket.on('connect', next);
      socket.on('error', () => resolve());
      socket.on('close', () => resolve());
      socket.on('data', (chunk: Buffer) => {
        buffered = takeMessages(buffered + chunk.toString('latin1'), (response) => {
          if (response.startsWith('HTTP/1.1 200 ')) answered++;
          next();
        });
      });
    });
  await Promise.all(Array.from({ length: CONNECTIONS }, (_, i) => connection(i)));
  return answered;
}
