// `trellis up`: the control plane of one-machine mode, in the foreground. It watches the state
// folder (default `.trellis/` in the working directory) with the LocalWatcher, serves the
// Destination gRPC API and the HTTP API (src/control/server.ts) and the Identity API with its
// certificate authority in `<state>/identity/` (src/control/identity/; the trust bundle is also
// written to `<state>/trust-anchor.pem`, workload tokens come from `trellis run`), and writes
// `<state>/control.json` with the bound addresses and trust domain so that the other commands
// find it; SIGINT/SIGTERM stop it cleanly and remove that file. `<state>/operator-token` (0600,
// made on the first start, src/control/operator-token.ts) is what the CLI shows the HTTP API to
// change state (`trellis identity rotate`). It also serves the Routes API (src/control/routes/:
// the Gateway API routes of `<state>/routes/` for the proxies, per Service port). Tracing: the
// proxies `trellis run` starts export spans to --trace-collector, or by default to this control
// plane's embedded collector (src/control/traces/, read by `trellis trace`), starting traces at
// --trace-sample-ratio (default 1); both are written into control.json for `trellis run`.
// --trace-protocol grpc makes them use OTLP/gRPC (to the control plane's gRPC API by default).
// The embedded collector takes spans only with `<state>/trace-token` (src/control/traces/token.ts),
// whose path control.json gives `trellis run`; it is never sent to a collector of --trace-collector.
import { join, resolve } from 'node:path';
import { ConfigError, TrellisError } from '../core/errors.ts';
import { LocalWatcher } from '../control/discovery/local.ts';
import { makeStateDir } from '../control/discovery/state-file-io.ts';
import { tightenStateFolder } from '../control/discovery/state-permissions.ts';
import { localCatalog, startControlPlane } from '../control/server.ts';
import {
  removeControlFile,
  runningControlFile,
  writeControlFile,
  type ControlFile,
} from '../api/control-file.ts';
import { type FlagSpec, formatHelp } from './flags.ts';
import { STATE_FLAG, stateFolder } from './targeting.ts';
import { isLoopbackAddress } from '../proxy/admin/server.ts';
import { splitHostPort } from '../proxy/config.ts';
import { LocalTokenVerifier } from '../control/identity/tokens.ts';
import { localPolicyComponent } from '../control/policy/component.ts';
import { localRouteComponent } from '../control/routes/component.ts';
import { EdgeTracker } from '../control/metrics/edges.ts';
import { loadOrCreateOperatorToken, operatorTokenPath } from '../control/operator-token.ts';
import { traceCollectorComponent } from '../control/traces/component.ts';
import { loadOrCreateTraceToken, traceTokenPath } from '../control/traces/token.ts';
import {
  collectorUrlOf,
  OTLP_PROTOCOLS,
  traceEndpoint,
  type OtlpProtocol,
} from '../proxy/telemetry/trace-endpoint.ts';
import {
  controlPlaneFlags,
  controlPlaneSettings,
  identityFlags,
  identitySettings,
  parseCommandFlags,
  serveUntilSignal,
  startIdentity,
} from './control.ts';
import { SUMMARIES } from './summaries.ts';

export const summary = SUMMARIES.up;

const DEFAULTS = { grpc: '127.0.0.1:8086', http: '127.0.0.1:8084' };
const FLAGS: FlagSpec[] = [
  STATE_FLAG,
  ...identityFlags(),
  ...controlPlaneFlags(DEFAULTS),
  {
    name: 'trace-collector',
    kind: 'string',
    help: 'collector URL the proxies of `trellis run` export spans to: http(s)://H:P OTLP/HTTP, grpc(s)://H:P OTLP/gRPC (default: this control plane, `trellis trace`)',
  },
  {
    name: 'trace-protocol',
    kind: 'string',
    help: 'grpc or http/protobuf: how those proxies export (default: the URL says; http/protobuf to this control plane)',
  },
  {
    name: 'trace-sample-ratio',
    kind: 'decimal',
    help: 'share 0..1 of requests without a sampling decision that those proxies start a trace for (default 1)',
  },
];

/**
 * Where `trellis run` proxies export spans (the protocol in the URL's scheme), their ratio, and for
 * this control plane's own collector its token file (control.json; docs/tracing.md).
 */
function tracingOf(
  values: Map<string, unknown>,
  plane: { readonly http: string; readonly grpc: string },
  root: string,
): NonNullable<ControlFile['tracing']> {
  const collector = values.get('trace-collector') as string | undefined;
  const protocol = values.get('trace-protocol') as OtlpProtocol | undefined;
  if (protocol !== undefined && !OTLP_PROTOCOLS.includes(protocol))
    throw new ConfigError('--trace-protocol', `expected grpc or http/protobuf, got '${protocol}'`);
  const ratio = (values.get('trace-sample-ratio') as number | undefined) ?? 1;
  if (!(ratio >= 0 && ratio <= 1)) throw new ConfigError('--trace-sample-ratio', 'must be 0..1');
  if (collector === undefined) {
    const own = protocol === 'grpc' ? `grpc://${plane.grpc}` : `http://${plane.http}`;
    return { collector: own, sampleRatio: ratio, tokenFile: traceTokenPath(resolve(root)) };
  }
  const endpoint = traceEndpoint(collector, protocol);
  if (typeof endpoint === 'string') throw new ConfigError('--trace-collector', endpoint);
  return { collector: collectorUrlOf(endpoint), sampleRatio: ratio };
}

export async function run(argv: string[]): Promise<number> {
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(formatHelp('Usage: trellis up [options]', FLAGS) + '\n');
    return 0;
  }
  const values = parseCommandFlags('up', argv, FLAGS);
  const root = stateFolder(values.get('state') as string | undefined);
  const settings = controlPlaneSettings(values, DEFAULTS);
  const identity = identitySettings(values);
  const log = settings.log.child({ component: 'up' });
  tracingOf(values, { http: settings.httpListen, grpc: settings.grpcListen }, root); // flags checked before anything starts

  try {
    await makeStateDir(root);
  } catch (error) {
    throw new ConfigError('--state', `cannot create ${root}: ${(error as Error).message}`);
  }
  // The folder is its owner's alone: what an older version (or a hand) left readable is narrowed.
  const tightened = await tightenStateFolder(root);
  if (tightened.narrowed.length > 0)
    log.warn('the state folder could be read by others: narrowed to 0700 (folders) and 0600 (files)', {
      state: root,
      narrowed: tightened.narrowed.length,
      paths: tightened.narrowed.slice(0, 10),
    });
  if (tightened.failed.length > 0)
    log.warn('cannot narrow parts of the state folder to its owner; others may read them', {
      state: root,
      failed: tightened.failed.slice(0, 10),
    });
  const running = await runningControlFile(root);
  if (running !== null && running.pid !== process.pid) {
    throw new TrellisError(
      'TRELLIS_ERR_ALREADY_RUNNING',
      `a control plane already runs over ${root} (pid ${running.pid}, gRPC ${running.grpc})`,
    );
  }

  const operatorToken = await loadOrCreateOperatorToken(root, (path) =>
    log.warn('the operator token could be read by others: narrowed to 0600', { path }),
  );
  const traceToken = await loadOrCreateTraceToken(root, (path) =>
    log.warn('the trace token could be read by others: narrowed to 0600', { path }),
  );
  const watcher = new LocalWatcher({ root, log: settings.log });
  try {
    await watcher.ready();
  } catch (error) {
    await watcher.close();
    throw new ConfigError('--state', `cannot watch ${root}: ${(error as Error).message}`);
  }
  let component;
  try {
    component = await startIdentity(identity, {
      dir: join(root, 'identity'),
      dirFlag: '--state',
      bundlePath: join(root, 'trust-anchor.pem'),
      verifier: new LocalTokenVerifier({ root, trustDomain: identity.trustDomain, log: settings.log }),
      log: settings.log,
    });
  } catch (error) {
    await watcher.close();
    throw error;
  }
  const catalog = localCatalog(root, settings.log);
  // The edges, shared with the routes component (a workload page's outbound routes).
  const edges = new EdgeTracker();
  const loopback = isLoopbackHost(splitHostPort(settings.httpListen).host);
  const plane = await startControlPlane({
    ...settings,
    watcher,
    catalog,
    edges,
    components: [
      component,
      localPolicyComponent(root, settings.log),
      localRouteComponent(
        root,
        settings.log,
        () => catalog.listServices(),
        () => edges.edges(),
      ),
      traceCollectorComponent({ log: settings.log, token: traceToken }),
    ],
    operatorToken,
    operatorTokenSource: `in the file ${operatorTokenPath(root)}`,
    // Taps and traces are for this host's users, unless the API is reachable from other hosts. A
    // loopback API answers only this host's names, never a web page's rebound one (host-guard.ts).
    sensitiveReadsNeedOperator: !loopback,
    onlyThisHostByName: loopback,
  });
  try {
    await writeControlFile(root, {
      grpc: plane.grpc,
      http: plane.http,
      pid: process.pid,
      trustDomain: identity.trustDomain,
      tracing: tracingOf(values, plane, root),
    });
  } catch (error) {
    await plane.close();
    throw error;
  }
  return serveUntilSignal(plane, { state: root }, log, () => removeControlFile(root));
}

/** Whether an HTTP API bound to `host` is reachable from this host only. */
function isLoopbackHost(host: string): boolean {
  return host === 'localhost' || isLoopbackAddress(host);
}
