// `trellis apply -f FILE`: validates the resources of multi-document YAML files
// (src/control/resources.ts) and writes them into the state folder, where a running `trellis up`
// picks them up. All or nothing: every document of every file is validated before the first write.
// `-f -` reads standard input. Services go to services/ (src/control/discovery/local-state.ts),
// Servers, AuthorizationPolicies and HTTPLocalRateLimitPolicies to policy/ (src/control/policy/state-files.ts), HTTPRoutes and
// GRPCRoutes (and the HTTPFaults they name, and XBackendTrafficPolicies) to routes/
// (src/control/routes/state-files.ts; a route or policy applied again keeps its first
// creationTimestamp, which orders equal matches and decides between two policies). `--delete`
// removes the resources the files name instead (kubectl delete -f), whatever their spec says.
// Each resource is reported as kubectl does: created, configured (changed) or unchanged (its file
// is left alone); with --delete, deleted or not found.
// Every error of every file is reported (file:line:column, document, field) before exiting 2;
// a reference to a Server or a service that neither the files nor the state folder define is
// applied with a warning (it may come later, as in Kubernetes).
import { readFile } from 'node:fs/promises';
import { text } from 'node:stream/consumers';
import { ConfigError } from '../core/errors.ts';
import { silentLogger } from '../core/log.ts';
import { readLocalState, servicePath, writeServiceFile } from '../control/discovery/local-state.ts';
import { removeFile, type WriteOutcome } from '../control/discovery/state-file-io.ts';
import { deletePolicyFile, readPolicyFolder, writePolicyFile } from '../control/policy/state-files.ts';
import { deleteRouteFile, readRouteState, writeRouteFile } from '../control/routes/state-files.ts';
import {
  danglingReferences,
  readResources,
  resourceName,
  type DefinedNames,
  type Resource,
} from '../control/resources.ts';
import { type FlagSpec, formatHelp } from './flags.ts';
import { parseCommandFlags } from './control.ts';
import { STATE_FLAG, stateFolder } from './targeting.ts';
import { SUMMARIES } from './summaries.ts';

export const summary = SUMMARIES.apply;

const FLAGS: FlagSpec[] = [
  {
    name: 'filename',
    short: 'f',
    kind: 'string',
    repeatable: true,
    help: 'YAML file of resources, or - for standard input (repeatable)',
  },
  STATE_FLAG,
  { name: 'delete', kind: 'boolean', help: 'remove the resources the files name instead of writing them' },
];

export async function run(argv: string[]): Promise<number> {
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(formatHelp('Usage: trellis apply -f FILE [options]', FLAGS) + '\n');
    return 0;
  }
  const values = parseCommandFlags('apply', argv, FLAGS);
  const files = (values.get('filename') as string[] | undefined) ?? [];
  if (files.length === 0) throw new ConfigError('-f', 'required: the YAML file to apply');
  const root = stateFolder(values.get('state') as string | undefined);

  const resources: Resource[] = [];
  const problems: string[] = [];
  for (const file of files) {
    const read = readResources(await readSource(file), file === '-' ? 'stdin' : file);
    resources.push(...read.resources);
    problems.push(...read.problems);
  }
  if (problems.length > 0) {
    const count = problems.length === 1 ? 'an error' : `${problems.length} errors`;
    process.stderr.write(
      problems.map((p) => `trellis apply: ${p}\n`).join('') +
        `trellis apply: ${count}; nothing was applied\n`,
    );
    return 2;
  }
  if (resources.length === 0) throw new ConfigError('-f', `no resources in ${files.join(', ')}`);
  const remove = values.get('delete') === true;
  if (!remove) {
    for (const warning of danglingReferences(resources, await definedNames(root)))
      process.stderr.write(`trellis apply: warning: ${warning}\n`);
  }
  for (const resource of resources) {
    if (remove) {
      const existed = await deleteResource(root, resource);
      process.stdout.write(`${resourceName(resource)} ${existed ? 'deleted' : 'not found'}\n`);
    } else {
      const outcome = await writeResource(root, resource);
      process.stdout.write(`${resourceName(resource)} ${outcome}\n`);
    }
  }
  return 0;
}

/** The Servers, Services and registered workloads the state folder holds now. */
async function definedNames(root: string): Promise<DefinedNames> {
  const [state, policy] = await Promise.all([
    readLocalState(root, new Map(), silentLogger),
    readPolicyFolder(root, new Map(), silentLogger),
  ]);
  return {
    servers: new Set(policy.servers.map((s) => `${s.namespace}/${s.name}`)),
    workloads: new Set([
      ...state.services.keys(),
      ...state.workloads.map((w) => `${w.namespace}/${w.spec.service}`),
    ]),
  };
}

/** Writes a resource's file (unless it holds the same); whether it was created, configured or unchanged. */
async function writeResource(root: string, resource: Resource): Promise<WriteOutcome> {
  if (resource.kind === 'Service')
    return writeServiceFile(root, resource.namespace, resource.name, resource.service);
  if (resource.kind === 'HTTPFault') return writeRouteFile(root, resource);
  if (
    resource.kind === 'HTTPRoute' ||
    resource.kind === 'GRPCRoute' ||
    resource.kind === 'XBackendTrafficPolicy'
  ) {
    const state = await readRouteState(root, new Map(), silentLogger);
    const existing = [...state.routes, ...state.backendPolicies].find(
      (r) => r.kind === resource.kind && r.namespace === resource.namespace && r.name === resource.name,
    );
    return writeRouteFile(
      root,
      existing === undefined ? resource : { ...resource, createdMs: existing.createdMs },
    );
  }
  return writePolicyFile(root, resource);
}

/** Removes a resource from the state folder; false when it was not there. */
async function deleteResource(root: string, resource: Resource): Promise<boolean> {
  if (
    resource.kind === 'HTTPRoute' ||
    resource.kind === 'GRPCRoute' ||
    resource.kind === 'HTTPFault' ||
    resource.kind === 'XBackendTrafficPolicy'
  )
    return deleteRouteFile(root, resource);
  if (resource.kind !== 'Service') return deletePolicyFile(root, resource);
  return removeFile(servicePath(root, resource.namespace, resource.name));
}

async function readSource(file: string): Promise<string> {
  if (file === '-') return text(process.stdin);
  try {
    return await readFile(file, 'utf8');
  } catch (error) {
    throw new ConfigError('-f', `cannot read ${file}: ${(error as NodeJS.ErrnoException).code ?? error}`);
  }
}
