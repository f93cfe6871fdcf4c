// What the inspection commands (stat, check, authz, identity) share, so that they take the same
// arguments: the flags that say which mesh (`--state`, `--control`), which namespace (`-n`) and
// which output (`-o`), `KIND/NAME` arguments with kubectl's and linkerd's kinds, and the choice of
// the registered workloads a command looks at (selectRegistrations). Also the one
// place the CLI reads the environment: TRELLIS_STATE, the state folder of every command that has
// none given with --state (default `.trellis` in the working directory).
import { ConfigError } from '../core/errors.ts';
import type { LocalWorkload } from '../control/discovery/local-state.ts';
import type { FlagSpec, ParsedFlags } from './flags.ts';

/** The state folder when neither --state nor TRELLIS_STATE says otherwise. */
export const DEFAULT_STATE = '.trellis';

export const STATE_FLAG: FlagSpec = {
  name: 'state',
  kind: 'string',
  help: `the state folder of \`trellis up\` (default: $TRELLIS_STATE, else ${DEFAULT_STATE})`,
};

export const CONTROL_FLAG: FlagSpec = {
  name: 'control',
  kind: 'string',
  help: "the control plane's HTTP API URL, e.g. http://127.0.0.1:8084 (instead of --state)",
};

export const NAMESPACE_FLAG: FlagSpec = {
  name: 'namespace',
  short: 'n',
  kind: 'string',
  help: 'the namespace (default: default)',
};

export const OPERATOR_TOKEN_FLAG: FlagSpec = {
  name: 'operator-token-file',
  kind: 'string',
  help: 'file of the operator token, for a control plane given with --control (default: <state>/operator-token)',
};

/** `-o/--output` taking one of `formats` (the first is the default). */
export function outputFlag(formats: readonly string[]): FlagSpec {
  return {
    name: 'output',
    short: 'o',
    kind: 'string',
    help: `${formats.join(' | ')} (default ${formats[0]})`,
  };
}

/** The chosen output format; a ConfigError listing the formats this command has. */
export function outputOf(values: ParsedFlags['values'], formats: readonly string[]): string {
  const output = (values.get('output') as string | undefined) ?? formats[0]!;
  if (!formats.includes(output))
    throw new ConfigError('--output', `expected ${formats.join(', ')}, got '${output}'`);
  return output;
}

/** The state folder: --state, else $TRELLIS_STATE, else .trellis. */
export function stateFolder(flag: string | undefined, env: NodeJS.ProcessEnv = process.env): string {
  const root = flag ?? (env.TRELLIS_STATE || DEFAULT_STATE);
  if (root === '') throw new ConfigError('--state', 'must not be empty');
  return root;
}

/** What a KIND names on one machine. */
export type TargetKind = 'workload' | 'pod' | 'namespace';

/**
 * Linkerd's and kubectl's kind names. On one machine a workload (the instances `trellis run`
 * starts for one service) plays the deployment and is named after its service; an instance (one
 * registration) plays the pod.
 */
const KIND_NAMES: Readonly<Record<string, TargetKind>> = {
  workload: 'workload',
  workloads: 'workload',
  wl: 'workload',
  deploy: 'workload',
  deployment: 'workload',
  deployments: 'workload',
  svc: 'workload',
  service: 'workload',
  services: 'workload',
  po: 'pod',
  pod: 'pod',
  pods: 'pod',
  ns: 'namespace',
  namespace: 'namespace',
  namespaces: 'namespace',
};

export interface Target {
  readonly kind: TargetKind;
  /** null: every resource of the kind (`trellis stat deploy`). */
  readonly name: string | null;
}

/**
 * `KIND/NAME`, `KIND` or a bare `NAME` (a workload) as a Target of one of the kinds a command
 * accepts; a ConfigError naming the kinds otherwise.
 */
export function parseTarget(arg: string, accepted: readonly TargetKind[], nameRequired = false): Target {
  const slash = arg.indexOf('/');
  const kindName = slash === -1 ? arg : arg.slice(0, slash);
  const bareKind = slash === -1 && KIND_NAMES[arg] !== undefined;
  const kind = slash === -1 && !bareKind ? 'workload' : KIND_NAMES[kindName];
  const name = slash === -1 ? (bareKind ? null : arg) : arg.slice(slash + 1);
  if (kind === undefined || !accepted.includes(kind)) {
    throw new ConfigError('KIND', `expected ${describeKinds(accepted)}, got '${kindName}'`);
  }
  if (name === '' || (name === null && nameRequired)) {
    throw new ConfigError('NAME', `missing after '${kindName}' (${kindName}/NAME)`);
  }
  return { kind, name };
}

function describeKinds(accepted: readonly TargetKind[]): string {
  const forms: Record<TargetKind, string> = {
    workload: 'deploy (deployment, workload, wl, svc)',
    pod: 'po (pod)',
    namespace: 'ns (namespace)',
  };
  return accepted.map((k) => forms[k]).join(', or ');
}

/** The namespace of -n and of an `ns/NAME` target; a ConfigError when the two disagree. */
export function namespaceOf(values: ParsedFlags['values'], target: Target | null): string | undefined {
  const flag = values.get('namespace') as string | undefined;
  if (target?.kind !== 'namespace' || target.name === null) return flag;
  if (flag !== undefined && flag !== target.name) {
    throw new ConfigError('--namespace', `'${flag}' and ns/${target.name} disagree`);
  }
  return target.name;
}

/** Which registrations (instances of workloads) a command looks at; what is left out matches all. */
export interface RegistrationFilter {
  readonly namespace?: string | undefined;
  /** The workload: the service its instances registered for. */
  readonly workload?: string | null | undefined;
  /** One instance, by the name of its registration. */
  readonly instance?: string | undefined;
}

/** The registrations that `filter` selects, in their order. */
export function selectRegistrations(
  registrations: readonly LocalWorkload[],
  filter: RegistrationFilter,
): LocalWorkload[] {
  const { namespace, workload, instance } = filter;
  return registrations.filter(
    (w) =>
      (namespace === undefined || w.namespace === namespace) &&
      (workload == null || w.spec.service === workload) &&
      (instance === undefined || w.name === instance),
  );
}
