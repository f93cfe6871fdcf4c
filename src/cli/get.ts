// `trellis get KIND [NAME]`: kubectl's `get` for what the control plane knows, through its HTTP
// API (the state folder's `trellis up`, or --control URL, e.g. `trellis control` on Kubernetes):
// HTTPRoutes and GRPCRoutes with their status (GET /api/routes of src/control/routes/component.ts:
// Accepted / ResolvedRefs / PartiallyInvalid as src/control/routes/status.ts computes them, the
// status `trellis routes` shows and the control plane writes back on Kubernetes), and Services
// (GET /api/services). KIND takes kubectl's names: singular, plural, short (svc) and Kind.
// `-o yaml|json` prints Kubernetes-shaped objects (one object for a NAME, else a List); the
// default a table, `-o wide` with more columns.
import { stringify } from 'yaml';
import { ConfigError } from '../core/errors.ts';
import type { ServiceView } from '../control/server.ts';
import { alignColumns } from './columns.ts';
import { findControlPlane, getControl } from './control-api.ts';
import { type FlagSpec, formatHelp, parseInterleaved } from './flags.ts';
import { CONTROL_FLAG, NAMESPACE_FLAG, outputFlag, outputOf, STATE_FLAG, stateFolder } from './targeting.ts';
import { SUMMARIES } from './summaries.ts';

export const summary = SUMMARIES.get;

type Kind = 'HTTPRoute' | 'GRPCRoute' | 'Service';

/** kubectl's names of each kind: singular, plural, short. */
export const KIND_NAMES: Readonly<Record<Kind, readonly string[]>> = {
  HTTPRoute: ['httproute', 'httproutes'],
  GRPCRoute: ['grpcroute', 'grpcroutes'],
  Service: ['service', 'services', 'svc'],
};

const OUTPUTS = ['table', 'wide', 'yaml', 'json'] as const;
const FLAGS: FlagSpec[] = [
  NAMESPACE_FLAG,
  { name: 'all-namespaces', short: 'A', kind: 'boolean', help: 'every namespace' },
  outputFlag(OUTPUTS),
  STATE_FLAG,
  CONTROL_FLAG,
];

const USAGE = `Usage: trellis get KIND [NAME] [-n NS | -A] [-o table|wide|yaml|json]

Lists what the control plane knows (the one of the state folder, or --control URL):
  httproutes (httproute), grpcroutes (grpcroute)   Gateway API routes with their status per
                  parent (Accepted, ResolvedRefs, PartiallyInvalid), as \`trellis routes\` shows it
                  and, on Kubernetes, as \`trellis control\` writes it back
  services (service, svc)                          Services with their ports and endpoints
With NAME, that one object (exit status 1 when there is none). -o yaml|json prints
Kubernetes-shaped objects; an invalid route is not served, so it is not listed (trellis apply
names its problem; on Kubernetes, kubectl get shows Accepted=False with it).`;

/** The kind a KIND argument names; a ConfigError listing the known ones. */
export function kindOf(arg: string): Kind {
  const lower = arg.toLowerCase();
  for (const [kind, names] of Object.entries(KIND_NAMES) as [Kind, readonly string[]][])
    if (names.includes(lower) || kind.toLowerCase() === lower) return kind;
  const known = Object.values(KIND_NAMES)
    .map((names) => names.join(', '))
    .join('; ');
  throw new ConfigError('KIND', `unknown kind '${arg}' (known: ${known})`);
}

type Json = Record<string, unknown>;

export async function run(argv: string[]): Promise<number> {
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(formatHelp(USAGE, FLAGS) + '\n');
    return 0;
  }
  const { values, rest } = parseInterleaved(argv, FLAGS);
  if (rest.length === 0) throw new ConfigError('KIND', 'required: what to list (trellis get httproutes)');
  if (rest.length > 2) throw new ConfigError('', `trellis get: unexpected argument '${rest[2]}'`);
  const kind = kindOf(rest[0]!);
  const name = rest[1];
  const all = values.get('all-namespaces') === true;
  if (all && values.has('namespace')) throw new ConfigError('--all-namespaces', 'not with --namespace');
  const namespace = all ? undefined : ((values.get('namespace') as string | undefined) ?? 'default');
  const output = outputOf(values, OUTPUTS);
  const control = values.get('control') as string | undefined;
  const stateFlag = values.get('state') as string | undefined;
  const api = await findControlPlane({ control, stateFlag, root: stateFolder(stateFlag) });

  let objects: Json[];
  if (kind === 'Service') {
    const services = await getControl<ServiceView[]>(api, '/api/services', 'the services');
    objects = services
      .filter(
        (s) =>
          (namespace === undefined || s.namespace === namespace) && (name === undefined || s.name === name),
      )
      .map(serviceObject);
  } else {
    const query = new URLSearchParams({ kind });
    if (namespace !== undefined) query.set('namespace', namespace);
    if (name !== undefined) query.set('name', name);
    objects = await getControl<Json[]>(api, `/api/routes?${query}`, 'the routes');
  }
  if (name !== undefined && objects.length === 0) {
    process.stderr.write(
      `trellis get: ${KIND_NAMES[kind][0]} "${name}" not found${namespace === undefined ? '' : ` in namespace ${namespace}`}\n`,
    );
    return 1;
  }
  const document = name !== undefined ? objects[0] : { apiVersion: 'v1', kind: 'List', items: objects };
  if (output === 'json') process.stdout.write(JSON.stringify(document, null, 2) + '\n');
  else if (output === 'yaml') process.stdout.write(stringify(document));
  else if (objects.length === 0)
    process.stderr.write(
      `No resources found${namespace === undefined ? '' : ` in ${namespace} namespace`}.\n`,
    );
  else {
    const wide = output === 'wide';
    const rows = kind === 'Service' ? serviceRows(objects, wide) : routeRows(objects, wide);
    const withNamespace =
      namespace === undefined
        ? rows.map((r, i) => [i === 0 ? 'NAMESPACE' : nsOf(objects[i - 1]!), ...r])
        : rows;
    process.stdout.write(alignColumns(withNamespace).join('\n') + '\n');
  }
  return 0;
}

const nsOf = (o: Json): string => String((o.metadata as Json).namespace);

/** A Service of GET /api/services as a Kubernetes object (its endpoints under status, for -o yaml|json). */
function serviceObject(s: ServiceView): Json {
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name: s.name, namespace: s.namespace },
    spec: {
      ports: s.ports.map((p) => ({ ...(p.name === undefined ? {} : { name: p.name }), port: p.port })),
    },
    status: {
      endpoints: Object.fromEntries(s.ports.map((p) => [String(p.port), p.endpoints.map((e) => e.address)])),
    },
  };
}

function serviceRows(objects: readonly Json[], wide: boolean): string[][] {
  const header = ['NAME', 'PORTS', 'ENDPOINTS', ...(wide ? ['ADDRESSES'] : [])];
  return [
    header,
    ...objects.map((o) => {
      const ports = (o.spec as { ports: { name?: string; port: number }[] }).ports;
      const endpoints = (o.status as { endpoints: Record<string, string[]> }).endpoints;
      const addresses = [...new Set(Object.values(endpoints).flat())];
      return [
        String((o.metadata as Json).name),
        ports.map((p) => `${p.port}${p.name === undefined ? '' : `/${p.name}`}`).join(',') || '<none>',
        String(addresses.length),
        ...(wide ? [addresses.join(',') || '<none>'] : []),
      ];
    }),
  ];
}

interface StatusCondition {
  type: string;
  status: string;
  reason: string;
}
interface Parent {
  parentRef: { name: string; namespace?: string; port?: number; sectionName?: string };
  conditions: StatusCondition[];
}

/** One cell per parent: "True" when every parent says True, else each parent's "web:80=False(Reason)". */
function conditionCell(parents: readonly Parent[], type: string): string {
  const cells = parents.map((p) => {
    const c = p.conditions.find((x) => x.type === type);
    return {
      parent: parentName(p),
      text: c === undefined ? '-' : c.status === 'True' ? 'True' : `False(${c.reason})`,
    };
  });
  if (cells.length === 0) return '-';
  if (cells.every((c) => c.text === cells[0]!.text)) return cells[0]!.text;
  return cells.map((c) => `${c.parent}=${c.text}`).join(',');
}

const parentName = (p: Parent): string =>
  `${p.parentRef.namespace === undefined ? '' : `${p.parentRef.namespace}/`}${p.parentRef.name}` +
  (p.parentRef.port === undefined ? '' : `:${p.parentRef.port}`) +
  (p.parentRef.sectionName === undefined ? '' : `#${p.parentRef.sectionName}`);

function routeRows(objects: readonly Json[], wide: boolean): string[][] {
  const header = [
    'NAME',
    'PARENTS',
    'ACCEPTED',
    'RESOLVED',
    ...(wide ? ['HOSTNAMES', 'RULES', 'CREATED'] : []),
  ];
  return [
    header,
    ...objects.map((o) => {
      const parents = (o.status as { parents: Parent[] }).parents;
      const spec = o.spec as { hostnames?: string[]; rules?: unknown[] };
      const meta = o.metadata as Json;
      return [
        String(meta.name),
        parents.map(parentName).join(',') || '<none>',
        conditionCell(parents, 'Accepted'),
        conditionCell(parents, 'ResolvedRefs'),
        ...(wide
          ? [
              (spec.hostnames ?? []).join(',') || '*',
              String(spec.rules?.length ?? 0),
              String(meta.creationTimestamp),
            ]
          : []),
      ];
    }),
  ];
}
