// `trellis proxy`: runs the data-plane proxy. Flags override the YAML file given by --config;
// every flag corresponds to a field of the configuration schema (src/proxy/config.ts).
import { type ProxyConfig, readConfigFile, validateProxyConfig } from '../proxy/config.ts';
import { ConfigError } from '../core/errors.ts';
import { startProxy } from '../proxy/proxy.ts';
import { createLogger } from '../core/log.ts';
import { type FlagSpec, formatHelp, parseFlags, setPath } from './flags.ts';
import { supervisorFdProblem, watchSupervisor } from './supervisor-pipe.ts';
import { SUMMARIES } from './summaries.ts';

export const summary = SUMMARIES.proxy;

const FLAGS: FlagSpec[] = [
  { name: 'config', kind: 'string', help: 'YAML configuration file (flags override it)' },
  {
    name: 'inbound-listen',
    kind: 'string',
    path: 'inboundListen',
    help: 'inbound listener HOST:PORT (default 0.0.0.0:4143)',
  },
  {
    name: 'outbound-listen',
    kind: 'string',
    path: 'outboundListen',
    help: 'outbound listener HOST:PORT (default 127.0.0.1:4140)',
  },
  {
    name: 'admin-listen',
    kind: 'string',
    path: 'adminListen',
    help: 'admin listener HOST:PORT (default 0.0.0.0:4191)',
  },
  {
    name: 'admin-token-file',
    kind: 'string',
    path: 'adminTokenFile',
    help: 'file holding the token POST /shutdown must present (absent: shutdown over HTTP is disabled)',
  },
  {
    name: 'app-port',
    kind: 'number',
    path: 'appPort',
    help: 'inbound traffic goes to the app at 127.0.0.1:PORT',
  },
  {
    name: 'app-host',
    kind: 'string',
    path: 'appHost',
    help: 'address of the app (default 127.0.0.1; transparent mode: the address a connection arrived on, the pod IP)',
  },
  {
    name: 'mode',
    kind: 'string',
    path: 'mode',
    help: 'explicit (default) or transparent (iptables REDIRECT, see trellis init)',
  },
  {
    name: 'destination',
    kind: 'string',
    repeatable: true,
    help: 'extra listener bound for one target: LISTEN=TARGET[/PROTOCOL], repeatable (a service target is resolved, and its mesh connection opened, before the proxy is ready)',
  },
  {
    name: 'destination-address',
    kind: 'string',
    path: 'discovery.address',
    help: "the control plane's Destination API HOST:PORT (service names are resolved through it)",
  },
  {
    name: 'workload',
    kind: 'string',
    path: 'workload.name',
    help: 'the name of the workload this proxy runs beside',
  },
  { name: 'namespace', kind: 'string', path: 'workload.namespace', help: 'its namespace (default: default)' },
  {
    name: 'app-port-names',
    kind: 'list',
    path: 'workload.appPortNames',
    help: 'comma list of names of the app port: a policy Server naming one selects --app-port',
  },
  {
    name: 'identity-address',
    kind: 'string',
    path: 'identity.address',
    help: "the control plane's Identity API HOST:PORT (certificates for mTLS)",
  },
  {
    name: 'identity-token-file',
    kind: 'string',
    path: 'identity.tokenFile',
    help: 'file holding the workload token sent with each certificate request',
  },
  {
    name: 'identity-dir',
    kind: 'string',
    path: 'identity.dir',
    help: 'fixed identity: folder with key.pem, cert.pem, trust-anchors.pem',
  },
  {
    name: 'trust-domain',
    kind: 'string',
    path: 'identity.trustDomain',
    help: 'trust domain of the SPIFFE ID (default cluster.local)',
  },
  {
    name: 'service-account',
    kind: 'string',
    path: 'identity.serviceAccount',
    help: 'service account of the SPIFFE ID (default: the workload name)',
  },
  {
    name: 'policy-address',
    kind: 'string',
    path: 'policy.address',
    help: "the control plane's Policy API HOST:PORT (inbound authorization)",
  },
  {
    name: 'default-policy',
    kind: 'string',
    path: 'policy.default',
    help: 'all-unauthenticated (default), all-authenticated, deny or audit',
  },
  {
    name: 'opaque-ports',
    kind: 'list',
    path: 'opaquePorts',
    help: 'comma list of ports forwarded as opaque TCP without detection',
  },
  {
    name: 'detect-timeout-ms',
    kind: 'number',
    path: 'detect.timeoutMs',
    help: 'protocol detection timeout (default 3000)',
  },
  {
    name: 'connect-timeout-ms',
    kind: 'number',
    path: 'timeouts.connectMs',
    help: 'upstream connect timeout (default 5000)',
  },
  {
    name: 'idle-timeout-ms',
    kind: 'number',
    path: 'timeouts.idleMs',
    help: 'idle connection timeout (default 300000)',
  },
  {
    name: 'response-timeout-ms',
    kind: 'number',
    path: 'timeouts.responseMs',
    help: 'upstream response head timeout, 0 = none',
  },
  {
    name: 'drain-grace-ms',
    kind: 'number',
    path: 'timeouts.drainGraceMs',
    help: 'time in-flight work gets on SIGTERM, and on connections to an endpoint that left discovery (default 30000)',
  },
  {
    name: 'jit-warm-up',
    kind: 'number',
    path: 'jitWarmUp.requests',
    help: 'requests the proxy sends through a scratch copy of itself before it is ready, so that its hot paths are compiled (0: off; default $TRELLIS_JIT_WARM_UP, else 600)',
  },
  {
    name: 'control-file',
    kind: 'string',
    path: 'controlPlane.file',
    help: 'control.json of `trellis up`: call the control plane where it says, and follow it',
  },
  {
    name: 'supervisor-fd',
    kind: 'number',
    path: 'supervisor.fd',
    help: 'a pipe from `trellis run`: when it closes, stop the app it names and exit',
  },
  {
    name: 'log-level',
    kind: 'string',
    path: 'log.level',
    help: 'trace|debug|info|warn|error|off (default info)',
  },
  {
    name: 'access-log',
    kind: 'string',
    path: 'log.access',
    help: 'off (default), stdout, stderr or a file path',
  },
  {
    name: 'tap-listen',
    kind: 'string',
    path: 'tap.listen',
    help: 'mTLS tap listener HOST:PORT: taps for callers with an allowed client certificate (default: off)',
  },
  {
    name: 'tap-allowed-identity',
    kind: 'string',
    repeatable: true,
    path: 'tap.allowedIdentities',
    help: "a SPIFFE ID that may tap over --tap-listen, repeatable (default: the control plane's, spiffe://TRUST-DOMAIN/ns/trellis/sa/trellis-control)",
  },
  {
    name: 'trace-collector',
    kind: 'string',
    path: 'tracing.collector',
    help: 'trace requests and export spans to URL: http(s)://H:P is OTLP/HTTP (URL/v1/traces), grpc(s)://H:P OTLP/gRPC (default: no tracing)',
  },
  {
    name: 'trace-protocol',
    kind: 'string',
    path: 'tracing.protocol',
    help: 'grpc or http/protobuf: the OTLP protocol, for an http(s):// collector URL (default: its scheme says)',
  },
  {
    name: 'trace-token-file',
    kind: 'string',
    path: 'tracing.bearerTokenFile',
    help: "a file whose token is sent to the collector as 'authorization: Bearer TOKEN'",
  },
  {
    name: 'trace-sample-ratio',
    kind: 'decimal',
    path: 'tracing.sampleRatio',
    help: 'share 0..1 of requests without a sampling decision that start a trace (default 0)',
  },
];

export async function run(argv: string[]): Promise<number> {
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(formatHelp('Usage: trellis proxy [options]', FLAGS) + '\n');
    return 0;
  }
  const { values, rest } = parseFlags(argv, FLAGS);
  if (rest.length > 0) {
    process.stderr.write(`trellis proxy: unexpected argument '${rest[0]}'\n`);
    return 2;
  }
  const file = values.has('config') ? await readConfigFile(values.get('config') as string) : null;
  const raw: Record<string, unknown> = file?.settings ?? {};
  for (const spec of FLAGS) {
    if (spec.path === undefined || !values.has(spec.name)) continue;
    let v = values.get(spec.name);
    if (spec.name === 'opaque-ports') v = (v as string[]).map((p) => (/^\d+$/.test(p) ? Number(p) : p));
    setPath(raw, spec.path, v);
  }
  // Destinations from flags come after those of the file; a file whose destinations are not a
  // list is left as it is, for validation to name.
  const fileDestinations = raw.destinations ?? [];
  if (values.has('destination') && Array.isArray(fileDestinations)) {
    const extra = (values.get('destination') as string[]).map(parseDestinationFlag);
    raw.destinations = [...(fileDestinations as unknown[]), ...extra];
  }
  const fromFlags = (field: string): string | null => {
    for (const spec of FLAGS) {
      if (spec.path === undefined || !values.has(spec.name)) continue;
      if (field === spec.path || field.startsWith(spec.path + '.')) return `--${spec.name}`;
    }
    const m = /^destinations\.(\d+)(\.|$)/.exec(field);
    if (m !== null && Array.isArray(fileDestinations) && Number(m[1]) >= fileDestinations.length) {
      return '--destination';
    }
    return null;
  };
  // A problem of a setting names the flag the user typed rather than the setting it fills in, or
  // else where the setting is in the file.
  const misconfigured = (field: string, message: string, unknownSetting = false): ConfigError => {
    const flag = fromFlags(field);
    if (flag !== null) return new ConfigError(flag, `${message} (${field})`);
    if (file === null) return new ConfigError(field, message);
    return new ConfigError(
      '',
      `${file.at(field, unknownSetting)}: ${field === '' ? '' : `${field}: `}${message}`,
    );
  };
  let config: ProxyConfig;
  try {
    config = validateProxyConfig(raw);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    const message = err.field === '' ? err.message : err.message.slice(err.field.length + 2);
    throw misconfigured(err.field, message, err.message.endsWith('unknown setting'));
  }
  if (config.supervisor.fd !== undefined) {
    const problem = supervisorFdProblem(config.supervisor.fd);
    if (problem !== null) throw misconfigured('supervisor.fd', problem);
  }
  const log = createLogger({ level: config.log.level }).child({ component: 'proxy' });
  let proxyRef: { shutdown(): Promise<void> } | null = null;
  const stop = () => {
    log.info('draining', { graceMs: config.timeouts.drainGraceMs });
    void proxyRef?.shutdown().then(
      () => process.exit(0),
      (err: unknown) => {
        log.error('drain failed', { error: err });
        process.exit(1);
      },
    );
  };
  const proxy = await startProxy(config, log, stop);
  proxyRef = proxy;
  if (config.supervisor.fd !== undefined) watchSupervisor(config.supervisor.fd, { log, onGone: stop });
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
  process.stdout.write(JSON.stringify({ event: 'ready', ...proxy.addresses }) + '\n');
  log.info('proxy ready', proxy.addresses);
  return await new Promise<number>(() => {});
}

/** LISTEN=TARGET[/PROTOCOL] */
function parseDestinationFlag(s: string): Record<string, string> {
  const eq = s.indexOf('=');
  if (eq === -1) throw new ConfigError('--destination', `expected LISTEN=TARGET[/PROTOCOL], got '${s}'`);
  const [target, protocol] = s.slice(eq + 1).split('/');
  const d: Record<string, string> = { listen: s.slice(0, eq), target: target ?? '' };
  if (protocol !== undefined) d.protocol = protocol;
  return d;
}
