// The resource kinds `trellis apply -f` accepts: multi-document YAML, each document a
// Kubernetes-shaped object validated with valibot, then translated into the state folder's own
// formats (local-state.ts). So far one kind, a Service:
//
//   apiVersion: v1
//   kind: Service
//   metadata: { name: web, namespace: shop }      # namespace: default "default"
//   spec:
//     ports:
//       - name: http            # optional
//         port: 80              # the port clients connect to
//         targetPort: 8080      # a number or a workload port name; default: `port`
//         appProtocol: http     # http | kubernetes.io/h2c | opaque (| trellis.dev/opaque); default: detect
//
// Fields Kubernetes manifests commonly carry but one-machine mode has no use for (labels,
// annotations, selector, type, protocol: TCP) are accepted and ignored; any other field is an
// error, so typos are caught. Every error is a ConfigError naming the source, the document (1-based,
// counting every document of the file) and the field: `services.yaml: document 2: spec.ports.0.port`.
import * as v from 'valibot';
import { parseAllDocuments } from 'yaml';
import { ConfigError } from '../core/errors.ts';
import { dnsLabel } from '../core/schema.ts';
import type { ServiceFile } from './discovery/local-state.ts';

const port = v.pipe(
  v.number('expected a port 1..65535'),
  v.integer('expected a port 1..65535'),
  v.minValue(1, 'expected a port 1..65535'),
  v.maxValue(65535, 'expected a port 1..65535'),
);
const stringMap = v.record(v.string(), v.string('expected a string'), 'expected a map of strings');
/** The message of the object schemas' own issues: an unknown field, a missing one, or not an object. */
const objectIssue = (issue: v.BaseIssue<unknown>) =>
  issue.expected === 'never'
    ? 'unknown field'
    : issue.received === 'undefined'
      ? 'required'
      : `expected ${issue.expected}, got ${issue.received}`;

/** appProtocol values and the state folder's protocol each one means. */
const APP_PROTOCOLS = {
  http: 'http1',
  'kubernetes.io/h2c': 'h2',
  opaque: 'opaque',
  'trellis.dev/opaque': 'opaque',
} as const;
type AppProtocol = keyof typeof APP_PROTOCOLS;

const servicePortSchema = v.strictObject(
  {
    name: v.optional(dnsLabel),
    port,
    targetPort: v.optional(v.union([port, dnsLabel], 'expected a port number or a port name')),
    appProtocol: v.optional(
      v.picklist(
        Object.keys(APP_PROTOCOLS) as AppProtocol[],
        `expected one of ${Object.keys(APP_PROTOCOLS).join(', ')}`,
      ),
    ),
    protocol: v.optional(v.literal('TCP', 'only TCP is supported')),
  },
  objectIssue,
);

const serviceSchema = v.strictObject(
  {
    apiVersion: v.literal('v1', 'expected v1'),
    kind: v.literal('Service', 'expected Service'),
    metadata: v.strictObject(
      {
        name: dnsLabel,
        namespace: v.optional(dnsLabel, 'default'),
        labels: v.optional(stringMap),
        annotations: v.optional(stringMap),
      },
      objectIssue,
    ),
    spec: v.strictObject(
      {
        ports: v.pipe(
          v.array(servicePortSchema, 'expected a list'),
          v.minLength(1, 'needs at least one port'),
          v.check(
            (ports) => new Set(ports.map((p) => p.port)).size === ports.length,
            'two ports with the same port number',
          ),
        ),
        selector: v.optional(stringMap),
        type: v.optional(v.literal('ClusterIP', 'only ClusterIP is supported')),
      },
      objectIssue,
    ),
  },
  objectIssue,
);

/** A validated Service, ready for writeServiceFile. */
export interface ServiceResource {
  readonly kind: 'Service';
  readonly namespace: string;
  readonly name: string;
  readonly service: ServiceFile;
}

export type Resource = ServiceResource;

/** "service/NAME.NAMESPACE", as `trellis apply` prints it. */
export function resourceName(resource: Resource): string {
  return `${resource.kind.toLowerCase()}/${resource.name}.${resource.namespace}`;
}

/**
 * Parses and validates every document of `text` (empty documents are skipped). Throws a
 * ConfigError naming `source`, the document and the field on the first problem; nothing else.
 */
export function parseResources(text: string, source: string): Resource[] {
  const documents = parseAllDocuments(text, { prettyErrors: false });
  const resources: Resource[] = [];
  documents.forEach((document, index) => {
    const where = `${source}: document ${index + 1}`;
    const yamlError = document.errors[0];
    if (yamlError !== undefined) {
      throw new ConfigError(where, `not valid YAML (${firstLine(yamlError.message)})`);
    }
    let raw: unknown;
    try {
      raw = document.toJS({ maxAliasCount: 100 });
    } catch (error) {
      throw new ConfigError(where, `not valid YAML (${firstLine((error as Error).message)})`);
    }
    if (raw === null || raw === undefined) return;
    resources.push(parseResource(raw, where));
  });
  return resources;
}

function parseResource(raw: unknown, where: string): Resource {
  if (typeof raw !== 'object' || Array.isArray(raw)) {
    throw new ConfigError(where, 'expected an object with apiVersion, kind, metadata and spec');
  }
  const kind = (raw as Record<string, unknown>).kind;
  if (kind !== 'Service') {
    throw new ConfigError(`${where}: kind`, `expected Service, got ${describe(kind)}`);
  }
  const result = v.safeParse(serviceSchema, raw);
  if (!result.success) {
    const issue = result.issues[0];
    const field = issue.path?.map((item) => String(item.key)).join('.') ?? '';
    throw new ConfigError(field === '' ? where : `${where}: ${field}`, issue.message);
  }
  const { metadata, spec } = result.output;
  return {
    kind: 'Service',
    namespace: metadata.namespace,
    name: metadata.name,
    service: {
      ports: spec.ports.map((p) => ({
        port: p.port,
        ...(p.name === undefined ? {} : { name: p.name }),
        ...(p.targetPort === undefined ? {} : { targetPort: p.targetPort }),
        protocol: p.appProtocol === undefined ? 'auto' : APP_PROTOCOLS[p.appProtocol],
      })),
    },
  };
}

function firstLine(message: string): string {
  return message.split('\n')[0] ?? message;
}

function describe(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value.length > 40 ? value.slice(0, 40) + '…' : value);
  if (value === undefined) return 'nothing';
  return Array.isArray(value) ? 'a list' : value === null ? 'null' : typeof value;
}
