// The local state folder of one-machine mode (`trellis up`, default `.trellis/`): services and
// the workloads that serve them, as small files that `trellis apply` and `trellis run` write and
// the LocalWatcher (local.ts) reads. Every file is validated with valibot; a bad file is reported
// with the field that is wrong and skipped, so one typo never takes discovery down.
//
//   <root>/services/<namespace>/<name>.yaml        a Service:
//       ports:
//         - port: 8080          # the port clients connect to (required)
//           name: http          # optional
//           targetPort: http    # the workload port: a number, or the name of a workload port;
//                               # default: the same number as `port`
//           protocol: auto      # auto | http1 | h2 | opaque (opaque: no protocol detection)
//       annotations:            # optional: retry.trellis.io/*, timeout.trellis.io/*, balancer.trellis.io/*
//         retry.trellis.io/http: 5xx
//
//   <root>/workloads/<namespace>/<name>-<id>.json   a workload registration (one instance):
//       { "service": "web", "address": "127.0.0.1",
//         "ports": [{ "name": "http", "port": 18080 }],   (or "port": 18080 for a single port)
//         "ready": true, "meshed": true, "identity": "spiffe://...",
//         "weight": 1, "zone": "local", "labels": { ... },
//         "admin": "127.0.0.1:4191",                      (its proxy's admin listener, for metrics)
//         "appPort": 8080,                                (the app behind the proxy, for policy)
//         "lease": { "renewedAt": 1733480000000, "durationMs": 10000 } }
//                                  (optional: the registration holds only while its holder renews
//                                   it; an expired one is left out and its file removed; at most
//                                   an hour, renewed no later than a minute from now)
//
// Files whose names start with "." or end in ".tmp" are ignored, so writers can write a temporary
// file and rename it into place (writeServiceFile / writeWorkloadFile do).
import { isIP } from 'node:net';
import { basename, join } from 'node:path';
import * as v from 'valibot';
import type { Logger } from '../../core/log.ts';
import { dnsLabel, port, portProtocol, strictObjectMessage } from '../../core/schema.ts';
import type { Endpoint, ServicePortKey } from './watcher.ts';
import {
  type FileCache,
  listStateFiles,
  readCachedFile,
  writeAtomically,
  writeIfChanged,
  type WriteOutcome,
} from './state-file-io.ts';
import { leaseExpired, servicePath, workloadPath, MAX_LEASE_MS } from './state-layout.ts';
import { parseYaml } from '../../core/yaml-position.ts';

export { servicePath, workloadPath } from './state-layout.ts';

const unknownKey = strictObjectMessage('unknown field');

const servicePortSchema = v.strictObject(
  {
    port,
    name: v.optional(dnsLabel),
    targetPort: v.optional(v.union([port, dnsLabel], 'expected a port number or a port name')),
    protocol: v.optional(portProtocol, 'auto'),
  },
  unknownKey,
);

export const serviceFileSchema = v.strictObject(
  {
    ports: v.pipe(v.array(servicePortSchema, 'expected a list'), v.minLength(1, 'needs at least one port')),
    annotations: v.optional(v.record(v.string(), v.string('expected a string'))),
  },
  unknownKey,
);

const workloadPortSchema = v.strictObject({ port, name: v.optional(dnsLabel) }, unknownKey);

/** How far in the future a lease's renewal may lie (clocks of one machine agree; this is slack). */
const LEASE_CLOCK_SLACK_MS = 60_000;

export const workloadFileSchema = v.pipe(
  v.strictObject(
    {
      service: dnsLabel,
      address: v.pipe(
        v.string('expected a string'),
        v.check((s) => isIP(s) !== 0, 'expected an IPv4 or IPv6 address'),
      ),
      ports: v.optional(v.array(workloadPortSchema, 'expected a list')),
      port: v.optional(port),
      /**
       * The port the app listens on behind its proxy (the proxy forwards every named port to it):
       * what an authorization policy Server selects.
       */
      appPort: v.optional(port),
      /** Only ready workloads are endpoints. */
      ready: v.optional(v.boolean('expected true or false'), true),
      meshed: v.optional(v.boolean('expected true or false'), false),
      identity: v.optional(v.string('expected a string'), ''),
      weight: v.optional(v.pipe(v.number('expected a number'), v.minValue(0, 'must not be negative')), 1),
      zone: v.optional(v.string('expected a string'), 'local'),
      labels: v.optional(v.record(v.string(), v.string('expected a string')), {}),
      /** The admin listener (HOST:PORT) of the workload's proxy, whose /metrics the control plane scrapes. */
      admin: v.optional(
        v.pipe(
          v.string('expected a string'),
          v.regex(/^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):\d{1,5}$/, 'expected HOST:PORT'),
        ),
      ),
      /** The holder's lease (state-layout.ts): absent, the registration holds until its file goes. */
      lease: v.optional(
        v.strictObject(
          {
            // Bounded both ways: a lease renewed in the future, or for longer than MAX_LEASE_MS,
            // would hold a registration whose holder is gone (one without a lease is meant to stay).
            renewedAt: v.pipe(
              v.number('expected ms since the epoch'),
              v.integer(),
              v.minValue(0),
              v.check((ms) => ms <= Date.now() + LEASE_CLOCK_SLACK_MS, 'is in the future'),
            ),
            durationMs: v.pipe(
              v.number('expected a number of ms'),
              v.integer(),
              v.minValue(1),
              v.maxValue(MAX_LEASE_MS, `must be at most ${MAX_LEASE_MS} (an hour; a lease is renewed)`),
            ),
          },
          unknownKey,
        ),
      ),
    },
    unknownKey,
  ),
  v.check((w) => w.port !== undefined || (w.ports?.length ?? 0) > 0, 'needs "port" or "ports"'),
);

export type ServiceFile = v.InferInput<typeof serviceFileSchema>;
export type WorkloadFile = v.InferInput<typeof workloadFileSchema>;
type ServicePort = v.InferOutput<typeof servicePortSchema>;

export interface LocalService {
  readonly namespace: string;
  readonly name: string;
  readonly ports: readonly ServicePort[];
  /** Its traffic annotations (src/core/routes/service-annotations.ts), for the route API. */
  readonly annotations?: Readonly<Record<string, string>>;
}

export interface LocalWorkload {
  /** Its registration file. */
  readonly file: string;
  readonly namespace: string;
  /** The file's name without ".json": "<name>-<id>". */
  readonly name: string;
  readonly spec: v.InferOutput<typeof workloadFileSchema>;
}

export interface LocalState {
  /** By "namespace/name". */
  readonly services: ReadonlyMap<string, LocalService>;
  /** In file order, so a later file with the same address wins consistently. */
  readonly workloads: readonly LocalWorkload[];
  /** Registrations whose lease has run out: left out of `workloads`, for their files to go. */
  readonly expired?: readonly LocalWorkload[];
}

type Parsed = { ok: true; value: LocalService | LocalWorkload } | { ok: false };

/** Remembers parsed files by path, so unchanged files are not re-read nor re-reported. */
export type StateFileCache = FileCache<Parsed>;

/**
 * Writes a service file atomically (validated first: throws TypeError on a bad one), unless it
 * holds the same already; says which.
 */
export async function writeServiceFile(
  root: string,
  namespace: string,
  name: string,
  service: ServiceFile,
): Promise<WriteOutcome> {
  const problem = firstProblem(v.safeParse(serviceFileSchema, service));
  if (problem !== null) throw new TypeError(`service ${namespace}/${name}: ${problem}`);
  return writeIfChanged(servicePath(root, namespace, name), JSON.stringify(service, null, 2) + '\n');
}

/** Writes a workload registration atomically (validated first: throws TypeError on a bad one). */
export async function writeWorkloadFile(
  root: string,
  namespace: string,
  name: string,
  workload: WorkloadFile,
) {
  const problem = firstProblem(v.safeParse(workloadFileSchema, workload));
  if (problem !== null) throw new TypeError(`workload ${namespace}/${name}: ${problem}`);
  await writeAtomically(workloadPath(root, namespace, name), JSON.stringify(workload, null, 2) + '\n');
}

/**
 * Reads the whole state folder as it stands at `now`. Never throws: unreadable or invalid files are
 * logged and skipped; registrations whose lease has run out are set apart in `expired`.
 */
export async function readLocalState(
  root: string,
  cache: StateFileCache,
  log: Logger,
  now: number = Date.now(),
): Promise<LocalState> {
  const seen = new Set<string>();
  const services = new Map<string, LocalService>();
  const workloads: LocalWorkload[] = [];
  const expired: LocalWorkload[] = [];
  for (const [namespace, file] of await listStateFiles(join(root, 'services'), ['.yaml', '.yml'])) {
    seen.add(file);
    const parsed = await parseCached(file, cache, log, (text) => parseService(namespace, file, text));
    if (parsed.ok) {
      const service = parsed.value as LocalService;
      services.set(`${service.namespace}/${service.name}`, service);
    }
  }
  for (const [namespace, file] of await listStateFiles(join(root, 'workloads'), ['.json'])) {
    seen.add(file);
    const parsed = await parseCached(file, cache, log, (text) => parseWorkload(namespace, file, text));
    if (!parsed.ok) continue;
    const workload = parsed.value as LocalWorkload;
    (leaseExpired(workload.spec.lease, now) ? expired : workloads).push(workload);
  }
  for (const file of cache.keys()) if (!seen.has(file)) cache.delete(file);
  return { services, workloads, ...(expired.length > 0 ? { expired } : {}) };
}

/**
 * The endpoints of a service port in `state`, by address key; null when the service or the port
 * does not exist. Workloads that are not ready, or have no port matching the target port, are
 * left out.
 */
export function endpointsOf(state: LocalState, key: ServicePortKey): Endpoint[] | null {
  const service = state.services.get(`${key.namespace}/${key.name}`);
  const servicePort = service?.ports.find((p) => p.port === key.port);
  if (servicePort === undefined) return null;
  const target = servicePort.targetPort ?? servicePort.port;
  const endpoints: Endpoint[] = [];
  for (const workload of state.workloads) {
    const spec = workload.spec;
    if (workload.namespace !== key.namespace || spec.service !== key.name || !spec.ready) continue;
    const ports = spec.port === undefined ? (spec.ports ?? []) : [...(spec.ports ?? []), { port: spec.port }];
    const workloadPort = ports.find((p) =>
      typeof target === 'string' ? p.name === target : p.port === target,
    )?.port;
    if (workloadPort === undefined) continue;
    endpoints.push({
      address: { host: spec.address, port: workloadPort },
      weight: spec.weight,
      labels: {
        ...spec.labels,
        namespace: key.namespace,
        service: key.name,
        workload: workload.name,
        zone: spec.zone,
      },
      meshed: spec.meshed,
      identity: spec.identity === '' ? null : spec.identity,
      protocolHint: servicePort.protocol === 'opaque' ? 'opaque' : spec.meshed ? 'h2' : 'unknown',
    });
  }
  return endpoints;
}

function parseService(namespace: string, file: string, text: string): LocalService | string {
  const name = stripExtension(basename(file));
  if (!isDnsLabel(namespace) || !isDnsLabel(name)) return 'file: namespace and name must be DNS labels';
  let raw: unknown;
  try {
    raw = parseYaml(text);
  } catch (error) {
    return `file: not valid YAML (${(error as Error).message.split('\n')[0]})`;
  }
  const result = v.safeParse(serviceFileSchema, raw);
  if (!result.success) return firstProblem(result) ?? 'invalid';
  const { ports, annotations } = result.output;
  return { namespace, name, ports, ...(annotations === undefined ? {} : { annotations }) };
}

function parseWorkload(namespace: string, file: string, text: string): LocalWorkload | string {
  const name = stripExtension(basename(file));
  if (!isDnsLabel(namespace)) return 'file: namespace must be a DNS label';
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (error) {
    return `file: not valid JSON (${(error as Error).message})`;
  }
  const result = v.safeParse(workloadFileSchema, raw);
  if (!result.success) return firstProblem(result) ?? 'invalid';
  return { file, namespace, name, spec: result.output };
}

async function parseCached(
  file: string,
  cache: StateFileCache,
  log: Logger,
  parse: (text: string) => LocalService | LocalWorkload | string,
): Promise<Parsed> {
  const parsed = await readCachedFile(file, cache, log, 'state file', (text): Parsed => {
    const value = parse(text);
    if (typeof value !== 'string') return { ok: true, value };
    const colon = value.indexOf(': ');
    log.warn('invalid state file skipped', {
      file,
      field: value.slice(0, colon),
      problem: value.slice(colon + 2),
    });
    return { ok: false };
  });
  return parsed ?? { ok: false };
}

/** "field.path: message" of a failed parse, or null when it succeeded. */
function firstProblem(result: v.SafeParseResult<v.GenericSchema>): string | null {
  if (result.success) return null;
  const issue = result.issues[0];
  const field = issue.path?.map((item) => String(item.key)).join('.') || '(file)';
  return `${field}: ${issue.message}`;
}

function stripExtension(name: string): string {
  return name.replace(/\.(ya?ml|json)$/, '');
}

function isDnsLabel(s: string): boolean {
  return /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/.test(s);
}
