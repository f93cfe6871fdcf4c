// Assembles a running proxy from a validated configuration: the runtime, the listeners (outbound,
// inbound, one per configured destination) and the admin server. Used by `trellis proxy` and by
// tests that run the proxy in-process.
import { readFileSync } from 'node:fs';
import type net from 'node:net';
import type { AddressInfo } from 'node:net';
import type { ProxyConfig } from './config.ts';
import { splitHostPort } from './config.ts';
import type { Logger } from '../core/log.ts';
import { ConfigError } from '../core/errors.ts';
import { openAccessLog } from './telemetry/access-log.ts';
import { ProxyRuntime } from './runtime.ts';
import { type ListenerSpec, startListener } from './listener.ts';
import { type AdminServer, startAdmin } from './admin/server.ts';
import { getOriginalDst } from './transport/original-dst.ts';
import { transparentAppTarget } from './inbound/app-target.ts';
import { targetKey, type Target } from '../core/target.ts';
import { loadAuthorizer, loadIdentity, type MeshOverrides } from './mesh/setup.ts';
import { loadMeshTransport } from './mesh/wiring.ts';
import { followControlFile } from './resolve/control-plane-address.ts';
import { TapHub } from './telemetry/tap-hub.ts';
import type { WarmTarget } from './outbound/warm-up.ts';
import { jitWarmUp, jitWarmUpRequests } from './jit-warm-up.ts';
import type { TapListener } from './admin/tap-listener.ts';
import { controlPlaneId } from '../core/spiffe.ts';

/** How long a starting proxy waits for its static destinations to be resolved and connected. */
const WARM_UP_BUDGET_MS = 1000;

export interface RunningProxy {
  readonly runtime: ProxyRuntime;
  /** Bound addresses, "HOST:PORT", by listener name (inbound, outbound, admin, tap, destination-N). */
  readonly addresses: Record<string, string>;
  /** Graceful drain, then everything closed. */
  shutdown(graceMs?: number): Promise<void>;
}

/** The admin token from its file (surrounding whitespace dropped); a missing or empty file is an error. */
function readAdminToken(path: string): string {
  let token: string;
  try {
    token = readFileSync(path, 'utf8').trim();
  } catch (err) {
    throw new ConfigError('adminTokenFile', `cannot read ${path}: ${(err as Error).message}`);
  }
  if (token === '') throw new ConfigError('adminTokenFile', `${path} is empty`);
  return token;
}

function formatAddress(a: AddressInfo): string {
  return a.family === 'IPv6' ? `[${a.address}]:${a.port}` : `${a.address}:${a.port}`;
}

export async function startProxy(
  config: ProxyConfig,
  log: Logger,
  onShutdownRequest?: () => void,
  /** Identity and authorizer to use instead of the configured ones (tests). */
  overrides: MeshOverrides = {},
): Promise<RunningProxy> {
  // A configuration error: found before anything starts that would have to be stopped again.
  const shutdownToken = config.adminTokenFile === undefined ? null : readAdminToken(config.adminTokenFile);
  const jitRequests = jitWarmUpRequests(config.jitWarmUp.requests, process.env);
  // The control plane's clients call the address of the control file, when one is followed.
  if (config.controlPlane.file !== undefined) followControlFile(config.controlPlane.file, log);
  // Neither waits for the control plane: the identity's first certificate comes when it comes.
  const identity = await loadIdentity(config, log, overrides);
  if (config.tap.listen !== undefined && identity === null) {
    throw new ConfigError(
      'tap.listen',
      'the mTLS tap listener needs the proxy to have an identity (identity.address or identity.dir)',
    );
  }
  let authorizer;
  try {
    authorizer = await loadAuthorizer(config, log, overrides);
  } catch (err) {
    identity?.close();
    throw err;
  }
  const mesh = identity === null ? null : { identity, transport: await loadMeshTransport() };
  const accessLog = openAccessLog(config.log.access, { log });
  const rt = new ProxyRuntime(config, log, accessLog, mesh, authorizer);
  const tap = new TapHub({
    maxTaps: config.tap.maxTaps,
    maxBufferedBytes: config.tap.maxBufferedBytes,
    ownIdentity: () => identity?.id ?? null,
    attach: (hub) => {
      rt.metrics.tap = hub;
    },
    log: log.child({ component: 'tap' }),
  });
  const transparent = config.mode === 'transparent';
  const app: Target | null =
    config.appPort !== undefined ? { host: config.appHost ?? '127.0.0.1', port: config.appPort } : null;

  const specs: ListenerSpec[] = [];
  const out = splitHostPort(config.outboundListen);
  specs.push({
    name: 'outbound',
    direction: 'outbound',
    ...out,
    protocol: 'auto',
    destination: transparent ? (s) => getOriginalDst(s) : () => null,
  });
  const inb = splitHostPort(config.inboundListen);
  specs.push({
    name: 'inbound',
    direction: 'inbound',
    ...inb,
    protocol: 'auto',
    destination: transparent
      ? (s: net.Socket) => {
          const orig = getOriginalDst(s);
          return orig !== null ? transparentAppTarget(config.appHost, s, orig.port, rt.ownPorts) : app;
        }
      : () => app,
  });
  // The static destinations, also readied before the ready line (warm-up below).
  const warmTargets: WarmTarget[] = [];
  config.destinations.forEach((d, i) => {
    const target = splitHostPort(d.target);
    warmTargets.push({ target, http1: d.protocol === 'auto' || d.protocol === 'http1' });
    specs.push({
      name: `destination-${i}`,
      direction: 'outbound',
      ...splitHostPort(d.listen),
      protocol: d.protocol,
      destination: () => target,
    });
  });

  const servers: net.Server[] = [];
  const addresses: Record<string, string> = {};
  let admin: AdminServer | null = null;
  let tapListener: TapListener | null = null;
  try {
    for (const spec of specs) {
      const server = await startListener(rt, spec);
      servers.push(server);
      const a = server.address() as AddressInfo;
      addresses[spec.name] = formatAddress(a);
      rt.ownPorts.add(a.port);
      if (spec.name === 'inbound') rt.inboundPort = a.port;
      if (spec.name === 'outbound') rt.outboundPort = a.port;
    }
    admin = await startAdmin({
      listen: splitHostPort(config.adminListen),
      shutdownToken,
      onConnectionLimit: (limit, action) => rt.metrics.connectionLimited('admin', limit, action),
      metrics: { render: () => rt.metrics.render() + tap.metrics() },
      tap,
      config: () => config,
      breakers: () => rt.discovery.breakerViews(),
      isReady: () => !rt.draining,
      onShutdown: () => onShutdownRequest?.(),
      log,
      ...(identity !== null ? { identity: () => identity.current()?.chainPem ?? null } : {}),
    });
    // Own ports from the moment they are bound: the inbound listener already takes connections.
    rt.ownPorts.add(admin.address.port);
    if (config.tap.listen !== undefined && identity !== null) {
      const { startTapListener } = await import('./admin/tap-listener.ts');
      tapListener = await startTapListener({
        listen: splitHostPort(config.tap.listen),
        identity,
        allowed: new Set(config.tap.allowedIdentities ?? [controlPlaneId(config.identity.trustDomain)]),
        hub: tap,
        onConnectionLimit: (limit, action) => rt.metrics.connectionLimited('tap', limit, action),
        log: log.child({ component: 'tap' }),
      });
      rt.ownPorts.add(tapListener.address.port);
    }
  } catch (err) {
    // Whatever did start must not keep the process alive after a failed start.
    await admin?.close();
    for (const s of servers) s.close();
    await accessLog?.close();
    rt.mesh.close();
    throw err;
  }
  // The static destinations' endpoints, routes and first connections, before the ready line.
  await rt.warmUp(warmTargets, WARM_UP_BUDGET_MS);
  // The hot paths compiled before the first request (jit-warm-up.ts).
  if (jitRequests > 0) {
    const done = await jitWarmUp(config, mesh, {
      requests: jitRequests,
      budgetMs: config.jitWarmUp.budgetMs,
      log,
    });
    log.info('JIT warm-up done', { ...done });
  }
  let shuttingDown: Promise<void> | null = null;
  addresses.admin = targetKey(admin.address);
  if (tapListener !== null) addresses.tap = targetKey(tapListener.address);

  const shutdown = (graceMs = config.timeouts.drainGraceMs): Promise<void> => {
    shuttingDown ??= (async () => {
      for (const s of servers) s.close();
      await rt.drain(graceMs);
      tap.close();
      await Promise.all([admin.close(), tapListener?.close()]);
    })();
    return shuttingDown;
  };
  return { runtime: rt, addresses, shutdown };
}
