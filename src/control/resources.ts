// The resource kinds `trellis apply -f` accepts: multi-document YAML, each document a
// Kubernetes-shaped object validated with valibot, then translated into the state folder's own
// formats (local-state.ts; policy kinds: src/control/policy/state-files.ts). Three kinds: a Service,
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
// and the policy kinds Server and AuthorizationPolicy (apiVersion policy.trellis.dev/v1alpha1,
// described and validated in src/control/policy/schema.ts).
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
import type { AuthorizationPolicyResource, PolicyResource, ServerResource } from './policy/model.ts';
import { authorizationPolicySchema, objectIssue, serverSchema, stringMap } from './policy/schema.ts';

const port = v.pipe(
  v.number('expected a port 1..65535'),
  v.integer('expected a port 1..65535'),
  v.minValue(1, 'expected a port 1..65535'),
  v.maxValue(65535, 'expected a port 1..65535'),
);
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

export type Resource = ServiceResource | PolicyResource;

/** The kinds `trellis apply` accepts. */
export const RESOURCE_KINDS = ['Service', 'Server', 'AuthorizationPolicy'] as const;

/** "service/NAME.NAMESPACE" ("server/...", "authorizationpolicy/..."), as `trellis apply` prints it. */
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
  switch (kind) {
    case 'Service':
      return serviceResource(validate(serviceSchema, raw, where));
    case 'Server':
    case 'AuthorizationPolicy':
      return parsePolicyResource(raw, where);
    default:
      throw new ConfigError(
        `${where}: kind`,
        `expected one of ${RESOURCE_KINDS.join(', ')}, got ${describe(kind)}`,
      );
  }
}

/**
 * Validates one Server or AuthorizationPolicy object (a document of a file, or a CRD object from
 * the Kubernetes API); throws a ConfigError naming `where` and the field.
 */
export function parsePolicyResource(raw: unknown, where: string): PolicyResource {
  const kind = (raw as Record<string, unknown> | null)?.kind;
  if (kind === 'Server') {
    const { metadata, spec } = validate(serverSchema, raw, where);
    const server: ServerResource = {
      kind: 'Server',
      namespace: metadata.namespace,
      name: metadata.name,
      spec: {
        ...(spec.workload === undefined ? {} : { workload: spec.workload }),
        ...(spec.podSelector === undefined
          ? {}
          : { podSelector: { matchLabels: spec.podSelector.matchLabels } }),
        port: spec.port,
        protocol: spec.protocol,
      },
    };
    return server;
  }
  if (kind === 'AuthorizationPolicy') {
    const { metadata, spec } = validate(authorizationPolicySchema, raw, where);
    const policy: AuthorizationPolicyResource = {
      kind: 'AuthorizationPolicy',
      namespace: metadata.namespace,
      name: metadata.name,
      spec: { server: spec.server, from: spec.from, routes: spec.routes },
    };
    return policy;
  }
  throw new ConfigError(`${where}: kind`, `expected Server or AuthorizationPolicy, got ${describe(kind)}`);
}

function validate<T extends v.GenericSchema>(schema: T, raw: unknown, where: string): v.InferOutput<T> {
  const result = v.safeParse(schema, raw);
  if (!result.success) {
    const issue = result.issues[0];
    const field = issue.path?.map((item) => String(item.key)).join('.') ?? '';
    throw new ConfigError(field === '' ? where : `${where}: ${field}`, issue.message);
  }
  return result.output;
}

function serviceResource({ metadata, spec }: v.InferOutput<typeof serviceSchema>): ServiceResource {
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
