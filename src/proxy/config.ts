// The proxy's configuration: one valibot schema gives both the validation (with the field that is
// wrong named in every error) and the TypeScript type. Sources, later overriding earlier: schema
// defaults, the YAML file (--config), then command-line flags. process.env is not read here.
import { readFileSync } from 'node:fs';
import * as v from 'valibot';
import { ConfigError } from '../core/errors.ts';
import { dnsLabel, port, portProtocol, strictObjectMessage } from '../core/schema.ts';
import { DEFAULT_POLICIES } from './policy/types.ts';
import { OTLP_PROTOCOLS, traceEndpoint } from './telemetry/trace-endpoint.ts';

// valibot rather than zod: the same schema-gives-the-type design, but it adds ~2 MB to a process
// where zod adds ~19 MB, and the proxy's memory budget is 60 MB.

const hostPort = v.pipe(
  v.string(),
  v.regex(/^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):\d{1,5}$/, 'expected HOST:PORT, e.g. 127.0.0.1:4140'),
  v.check((s) => Number(s.slice(s.lastIndexOf(':') + 1)) <= 65535, 'port must be 0..65535'),
);
const DNS_NAME = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?(\.[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)*$/;
const ms = v.pipe(
  v.number('expected a number of milliseconds'),
  v.integer('expected a whole number'),
  v.minValue(0, 'must not be negative'),
);
const count = (min: number) =>
  v.pipe(
    v.number('expected a number'),
    v.integer('expected a whole number'),
    v.minValue(min, `must be at least ${min}`),
  );
const unknownKey = strictObjectMessage('unknown setting');

/** The HTTP/1 head limits' defaults (http1.*), also the HTTP/2 paths' when none are given. */
export const HTTP1_LIMIT_DEFAULTS = {
  maxRequestLineBytes: 8192,
  maxHeaderBytes: 64 * 1024,
  maxHeaders: 128,
} as const;

const destinationSchema = v.strictObject(
  {
    /** A listener bound for one destination (explicit mode). */
    listen: hostPort,
    /** Where its connections go: HOST:PORT. */
    target: hostPort,
    /** auto detects the protocol; the others skip detection. */
    protocol: v.optional(portProtocol, 'auto'),
  },
  unknownKey,
);

export const proxyConfigSchema = v.strictObject(
  {
    inboundListen: v.optional(hostPort, '0.0.0.0:4143'),
    outboundListen: v.optional(hostPort, '127.0.0.1:4140'),
    adminListen: v.optional(hostPort, '0.0.0.0:4191'),
    /**
     * A file holding the admin token: POST /shutdown must present it (Authorization: Bearer) as
     * well as come from loopback. Absent: shutdown over HTTP is disabled (signals still work).
     */
    adminTokenFile: v.optional(v.pipe(v.string(), v.minLength(1, 'must not be empty'))),
    /** Inbound traffic is forwarded to the application at appHost:appPort. */
    appPort: v.optional(port),
    /**
     * Where the app is: 127.0.0.1 when absent; in transparent mode the address the connection
     * arrived on (the pod's IP) when absent (src/proxy/inbound/app-target.ts says why).
     */
    appHost: v.optional(v.pipe(v.string(), v.minLength(1, 'must not be empty'))),
    /**
     * explicit: destinations come from the listener (inbound: the app port; outbound: the HTTP
     * proxy request). transparent: listeners behind iptables REDIRECT read SO_ORIGINAL_DST.
     */
    mode: v.optional(v.picklist(['explicit', 'transparent'], 'expected explicit or transparent'), 'explicit'),
    /** Extra listeners, each bound for one destination. */
    destinations: v.optional(v.array(destinationSchema, 'expected a list'), []),
    /** Ports whose protocols are server-first or otherwise undetectable: forwarded as opaque TCP. */
    opaquePorts: v.optional(
      v.array(port, 'expected a list of ports'),
      [25, 587, 3306, 4444, 5432, 6379, 9300, 11211],
    ),
    discovery: v.optional(
      v.strictObject(
        {
          /** The control plane's Destination API (HOST:PORT); absent: every target is direct. */
          address: v.optional(hostPort),
          /** How long a request waits for a known service to have endpoints before a 503. */
          failFastMs: v.optional(ms, 3000),
          /** A service no request asked for during this long stops being watched. */
          idleMs: v.optional(ms, 60_000),
          /**
           * Whether IP destinations are looked up through the control plane too (a Service's
           * ClusterIP becomes its endpoints, a pod IP that pod, meshed with its identity; other
           * addresses, and loopback ones always, stay direct). Absent: true in transparent mode,
           * where an app's connection only tells its original destination IP, and false in
           * explicit mode, where apps name services and an IP means "this address". The runtime
           * decides: `resolveAddresses ?? mode === 'transparent'`.
           */
          resolveAddresses: v.optional(v.boolean('expected true or false')),
        },
        unknownKey,
      ),
      {},
    ),
    /** Who this proxy runs beside (metrics labels and, later, identity). */
    workload: v.optional(
      v.strictObject(
        {
          name: v.optional(v.string(), ''),
          namespace: v.optional(v.string(), 'default'),
          /**
           * Names of the app port (`trellis run` gives its service's target port names): a policy
           * Server whose port is one of these names selects appPort on this proxy. Needs appPort.
           */
          appPortNames: v.optional(v.pipe(v.array(dnsLabel), v.maxLength(32, 'at most 32 names')), []),
        },
        unknownKey,
      ),
      {},
    ),
    /**
     * This proxy's identity (mTLS between meshed proxies): from the control plane's Identity API
     * (`address` and a token), or fixed PEM files (`dir`). Neither: no identity; meshed
     * destinations are reached as before (plaintext) and inbound accepts plaintext only.
     */
    identity: v.optional(
      v.strictObject(
        {
          /** The control plane's Identity API (HOST:PORT). */
          address: v.optional(hostPort),
          /** A file holding the workload's token (re-read before each request for a certificate). */
          tokenFile: v.optional(v.pipe(v.string(), v.minLength(1, 'must not be empty'))),
          /** The trust domain of the SPIFFE ID asked for. */
          trustDomain: v.optional(
            v.pipe(v.string(), v.regex(DNS_NAME, 'expected a DNS name')),
            'cluster.local',
          ),
          /** The service account of the SPIFFE ID asked for (default: workload.name). */
          serviceAccount: v.optional(dnsLabel),
          /** A folder with key.pem, cert.pem (leaf first) and trust-anchors.pem: a fixed identity. */
          dir: v.optional(v.pipe(v.string(), v.minLength(1, 'must not be empty'))),
        },
        unknownKey,
      ),
      {},
    ),
    /** Inbound authorization (see src/proxy/policy/types.ts). */
    policy: v.optional(
      v.strictObject(
        {
          /** The control plane's Policy API (HOST:PORT); absent: only the default policy applies. */
          address: v.optional(hostPort),
          /** For ports no Server selects. */
          default: v.optional(
            v.picklist(DEFAULT_POLICIES, `expected one of ${DEFAULT_POLICIES.join(', ')}`),
            'all-unauthenticated',
          ),
        },
        unknownKey,
      ),
      {},
    ),
    mesh: v.optional(
      v.strictObject(
        {
          /**
           * The header that tells the app the verified identity of its client ('' = none). The
           * proxy removes it from every inbound request first, so an app can trust it.
           */
          clientIdHeader: v.optional(
            v.pipe(v.string(), v.regex(/^([a-z0-9-]+)?$/, 'expected a lower-case header name')),
            'trellis-client-id',
          ),
          /**
           * Whether every inbound request reaches the app with the address it came from appended
           * to X-Forwarded-For (inbound/forwarded-for.ts).
           */
          appendForwardedFor: v.optional(v.boolean(), true),
        },
        unknownKey,
      ),
      {},
    ),
    detect: v.optional(
      v.strictObject(
        {
          /** How long to wait for the client's first bytes before treating the connection as opaque. */
          timeoutMs: v.optional(ms, 3000),
          /**
           * Inbound, on ports declared opaque or seen to be server-first: how long to wait for a
           * client's first bytes (a meshed client's TLS ClientHello comes at once) before a silent
           * client is connected to the app.
           */
          peekMs: v.optional(ms, 250),
          /** How long a destination whose detection timed out is remembered as opaque. */
          opaqueCacheMs: v.optional(ms, 60_000),
          opaqueCacheMax: v.optional(count(0), 10_000),
        },
        unknownKey,
      ),
      {},
    ),
    http1: v.optional(
      v.strictObject(
        {
          maxRequestLineBytes: v.optional(count(64), HTTP1_LIMIT_DEFAULTS.maxRequestLineBytes),
          maxHeaderBytes: v.optional(count(256), HTTP1_LIMIT_DEFAULTS.maxHeaderBytes),
          maxHeaders: v.optional(count(1), HTTP1_LIMIT_DEFAULTS.maxHeaders),
        },
        unknownKey,
      ),
      {},
    ),
    timeouts: v.optional(
      v.strictObject(
        {
          connectMs: v.optional(ms, 5000),
          /** A connection with nothing in flight and no bytes for this long is closed (0: never). */
          idleMs: v.optional(ms, 300_000),
          /** Time allowed for a client to send a whole request head (slow clients get 408). */
          requestHeadMs: v.optional(ms, 10_000),
          /**
           * While a request body arrives: the longest the client may send nothing (time the proxy
           * holds it back for a slow upstream does not count) before the exchange ends with 408.
           */
          requestBodyIdleMs: v.optional(ms, 30_000),
          /** Time allowed for the upstream's response head (0: no limit). */
          responseMs: v.optional(ms, 0),
          /**
           * On SIGTERM: how long in-flight work may take before the proxy exits anyway. Also how
           * long requests in flight on a pooled connection to an endpoint that left discovery may
           * take before that connection is closed anyway.
           */
          drainGraceMs: v.optional(ms, 30_000),
        },
        unknownKey,
      ),
      {},
    ),
    /**
     * How many connections each listener holds at once. At a limit the connection idle longest is
     * closed to make room (one waiting for its first bytes, or keep-alive between requests); with
     * none idle the new one is refused. Absent: derived from the open-files limit (a quarter of
     * it, after a reserve, per listener; per peer: a quarter of that on inbound, none outbound).
     * 0: no limit.
     */
    connections: v.optional(
      v.strictObject(
        {
          maxPerListener: v.optional(count(0)),
          maxPerPeer: v.optional(count(0)),
        },
        unknownKey,
      ),
      {},
    ),
    pool: v.optional(
      v.strictObject(
        {
          maxIdlePerHost: v.optional(count(0), 128),
          idleTimeoutMs: v.optional(ms, 60_000),
        },
        unknownKey,
      ),
      {},
    ),
    /**
     * The JIT warm-up before the ready line (src/proxy/jit-warm-up.ts): requests through a scratch
     * pair in the process, so that the app's first requests run compiled code. Needs an identity.
     */
    jitWarmUp: v.optional(
      v.strictObject(
        {
          /** How many (0: off). Absent: TRELLIS_JIT_WARM_UP from the environment, else 600. */
          requests: v.optional(v.pipe(count(0), v.maxValue(100_000, 'must be at most 100000'))),
          /** The most time it may take; it stops there, with what it did. */
          budgetMs: v.optional(v.pipe(ms, v.maxValue(60_000, 'must be at most 60000')), 2000),
        },
        unknownKey,
      ),
      {},
    ),
    /** Finding the control plane again after it restarts (see src/proxy/resolve/control-plane-address.ts). */
    controlPlane: v.optional(
      v.strictObject(
        {
          /**
           * The control file of `trellis up` (`<state>/control.json`): while it exists, the
           * Destination, Policy and Identity clients call the gRPC address written there instead of
           * theirs, and follow it when the control plane restarts (on the same or other ports).
           */
          file: v.optional(v.pipe(v.string(), v.minLength(1, 'must not be empty'))),
        },
        unknownKey,
      ),
      {},
    ),
    /** The process that runs this proxy beside its app (`trellis run`; see src/cli/supervisor-pipe.ts). */
    supervisor: v.optional(
      v.strictObject(
        {
          /**
           * A pipe from the supervisor, which names the app's process group on it. When it closes
           * (the supervisor is gone, even by SIGKILL), the proxy stops that process group and exits.
           */
          fd: v.optional(count(3)),
        },
        unknownKey,
      ),
      {},
    ),
    /** Live taps through the admin listener's GET /tap (`trellis tap`, docs/tap.md). */
    tap: v.optional(
      v.strictObject(
        {
          /** Taps attached at once; one more is refused (429) and counted. */
          maxTaps: v.optional(v.pipe(count(0), v.maxValue(64, 'must be at most 64')), 8),
          /** Bytes a tap's reader may leave unread before its events are dropped and counted. */
          maxBufferedBytes: v.optional(
            v.pipe(count(4096), v.maxValue(16 << 20, 'must be at most 16 MiB')),
            256 * 1024,
          ),
          /**
           * HOST:PORT of the mTLS tap listener (admin/tap-listener.ts): the same taps as the admin
           * listener's GET /tap, for callers that present a client certificate of the trust
           * anchors naming one of `allowedIdentities` (the control plane on Kubernetes, port 4190).
           * Needs the proxy's identity. Absent: off.
           */
          listen: v.optional(hostPort),
          /**
           * The SPIFFE IDs that may tap over `listen`. Absent: the control plane's,
           * spiffe://<identity.trustDomain>/ns/trellis/sa/trellis-control.
           */
          allowedIdentities: v.optional(
            v.array(
              v.pipe(v.string(), v.regex(/^spiffe:\/\/[^/\s]+\/\S+$/, 'expected a spiffe:// ID')),
              'expected a list of SPIFFE IDs',
            ),
          ),
        },
        unknownKey,
      ),
      {},
    ),
    /** Distributed tracing (docs/tracing.md). */
    tracing: v.optional(
      v.pipe(
        v.strictObject(
          {
            /**
             * The collector's URL (src/proxy/telemetry/trace-endpoint.ts): http(s)://H:P, the OTLP/HTTP
             * base URL (spans are POSTed to {collector}/v1/traces as protobuf), or grpc(s)://H:P for
             * OTLP/gRPC. Absent: the proxy does not trace, and trace context passes through untouched.
             */
            collector: v.optional(
              v.pipe(
                v.string(),
                v.rawCheck(({ dataset, addIssue }) => {
                  const endpoint = dataset.typed ? traceEndpoint(dataset.value) : null;
                  if (typeof endpoint === 'string') addIssue({ message: endpoint });
                }),
              ),
            ),
            /**
             * The OTLP protocol, as OTEL_EXPORTER_OTLP_PROTOCOL names it: grpc or http/protobuf.
             * Absent: the collector URL's scheme says (grpc(s):// is gRPC, http(s):// is HTTP).
             */
            protocol: v.optional(v.picklist(OTLP_PROTOCOLS, 'expected grpc or http/protobuf')),
            /**
             * A file holding the bearer token the collector wants (sent as `authorization: Bearer
             * TOKEN` with each export; the embedded collector of `trellis up` wants its
             * `<state>/trace-token`). Read once at startup.
             */
            bearerTokenFile: v.optional(v.pipe(v.string(), v.minLength(1, 'must not be empty'))),
            /**
             * The share of requests that arrive without a sampling decision that start a new trace
             * (0..1); requests that arrive sampled are always traced, unsampled ones never.
             */
            sampleRatio: v.optional(
              v.pipe(
                v.number('expected a number'),
                v.minValue(0, 'must be 0..1'),
                v.maxValue(1, 'must be 0..1'),
              ),
              0,
            ),
            /** Finished spans waiting for export at most; more are dropped and counted. */
            maxQueuedSpans: v.optional(count(1), 2048),
            /** Spans per export request at most. */
            maxBatchSpans: v.optional(count(1), 512),
            /** How long a span waits for its batch to fill before the batch is sent anyway. */
            batchDelayMs: v.optional(ms, 1000),
            /** How long one export request may take; its spans are then dropped and counted. */
            exportTimeoutMs: v.optional(ms, 10_000),
            /** service.name of the spans (default: workload.name, else trellis-proxy). */
            serviceName: v.optional(v.pipe(v.string(), v.minLength(1, 'must not be empty'))),
          },
          unknownKey,
        ),
        v.forward(
          v.check(
            (t) => t.collector === undefined || typeof traceEndpoint(t.collector, t.protocol) !== 'string',
            'a grpc:// or grpcs:// collector is OTLP/gRPC: the protocol cannot be http/protobuf',
          ),
          ['protocol'],
        ),
      ),
      {},
    ),
    log: v.optional(
      v.strictObject(
        {
          level: v.optional(
            v.picklist(
              ['trace', 'debug', 'info', 'warn', 'error', 'off'],
              'expected trace, debug, info, warn, error or off',
            ),
            'info',
          ),
          /** Access log, one JSON line per request: off, stdout, stderr or a file path. */
          access: v.optional(v.string(), 'off'),
        },
        unknownKey,
      ),
      {},
    ),
  },
  unknownKey,
);

export type ProxyConfig = v.InferOutput<typeof proxyConfigSchema>;
export type DestinationConfig = v.InferOutput<typeof destinationSchema>;

const SECTIONS = new Set([
  'discovery',
  'workload',
  'identity',
  'policy',
  'mesh',
  'detect',
  'http1',
  'timeouts',
  'connections',
  'pool',
  'log',
  'controlPlane',
  'supervisor',
  'tracing',
  'tap',
]);

function isMapping(x: unknown): x is Record<string, unknown> {
  return typeof x === 'object' && x !== null && !Array.isArray(x);
}

/** Validates a plain object; throws ConfigError naming the first wrong field. */
export function validateProxyConfig(input: unknown): ProxyConfig {
  // valibot's object schemas accept arrays; a list where a mapping belongs is an error here.
  if (!isMapping(input)) throw new ConfigError('', 'expected a mapping of settings');
  for (const [key, value] of Object.entries(input)) {
    if (SECTIONS.has(key) && value !== undefined && !isMapping(value))
      throw new ConfigError(key, 'expected a mapping');
  }
  const result = v.safeParse(proxyConfigSchema, input, { abortEarly: true });
  if (result.success) {
    if (result.output.workload.appPortNames.length > 0 && result.output.appPort === undefined)
      throw new ConfigError('workload.appPortNames', 'names the app port: needs appPort');
    return result.output;
  }
  const issue = result.issues[0];
  const field = v.getDotPath(issue) ?? '';
  throw new ConfigError(field, issue.message);
}

/** A config file's settings, and where a field is in it ("FILE:LINE:COLUMN"). */
export interface ConfigFile {
  readonly settings: Record<string, unknown>;
  /** `atKey`: point at the field's key rather than its value (an unknown setting). */
  at(field: string, atKey?: boolean): string;
}

/** Reads a YAML config file (the yaml module is loaded only then: it costs memory). */
export async function readConfigFile(path: string): Promise<ConfigFile> {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new ConfigError('', `cannot read config file ${path}: ${(err as Error).message}`);
  }
  const { parseYamlSource } = await import('../core/yaml-position.ts');
  let source;
  try {
    source = parseYamlSource(text, path);
  } catch (err) {
    throw new ConfigError('', `config file ${(err as Error).message}`);
  }
  const doc = source.value;
  if (typeof doc !== 'object' || Array.isArray(doc)) {
    throw new ConfigError('', `config file ${path} must hold a mapping of settings`);
  }
  return {
    settings: (doc ?? {}) as Record<string, unknown>,
    at: (field, atKey) =>
      source.at(field === '' ? [] : field.split('.').map((s) => (/^\d+$/.test(s) ? Number(s) : s)), atKey),
  };
}

/** Splits "HOST:PORT" (IPv6 in brackets) into its parts. */
export function splitHostPort(s: string): { host: string; port: number } {
  const i = s.lastIndexOf(':');
  let host = s.slice(0, i);
  if (host.startsWith('[') && host.endsWith(']')) host = host.slice(1, -1);
  return { host, port: Number(s.slice(i + 1)) };
}
