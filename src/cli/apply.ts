// `trellis apply -f FILE`: validates the resources of multi-document YAML files
// (src/control/resources.ts) and writes them into the state folder, where a running `trellis up`
// picks them up. All or nothing: every document of every file is validated before the first write.
// `-f -` reads standard input. Services go to services/ (src/control/discovery/local-state.ts),
// Servers and AuthorizationPolicies to policy/ (src/control/policy/state-files.ts). `--delete`
// removes the resources the files name instead (kubectl delete -f), whatever their spec says.
import { readFile } from 'node:fs/promises';
import { text } from 'node:stream/consumers';
import { ConfigError } from '../core/errors.ts';
import { servicePath, writeServiceFile } from '../control/discovery/local-state.ts';
import { removeFile } from '../control/discovery/state-file-io.ts';
import { deletePolicyFile, writePolicyFile } from '../control/policy/state-files.ts';
import { parseResources, resourceName, type Resource } from '../control/resources.ts';
import { type FlagSpec, formatHelp } from './flags.ts';
import { parseCommandFlags } from './control.ts';

export const summary =
  'validate YAML resources (Service, Server, AuthorizationPolicy) and write them into the state folder';

const FLAGS: FlagSpec[] = [
  {
    name: 'filename',
    kind: 'string',
    repeatable: true,
    help: 'YAML file of resources, or - for standard input (also -f; repeatable)',
  },
  { name: 'state', kind: 'string', help: 'the state folder (default .trellis)' },
  { name: 'delete', kind: 'boolean', help: 'remove the resources the files name instead of writing them' },
];

export async function run(argv: string[]): Promise<number> {
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(formatHelp('Usage: trellis apply -f FILE [options]', FLAGS) + '\n');
    return 0;
  }
  // kubectl's short form: -f FILE, -f=FILE.
  const args = argv.map((arg) => (arg === '-f' ? '--filename' : arg.replace(/^-f=/, '--filename=')));
  const values = parseCommandFlags('apply', args, FLAGS);
  const files = (values.get('filename') as string[] | undefined) ?? [];
  if (files.length === 0) throw new ConfigError('-f', 'required: the YAML file to apply');
  const root = (values.get('state') as string | undefined) ?? '.trellis';
  if (root === '') throw new ConfigError('--state', 'must not be empty');

  const resources: Resource[] = [];
  for (const file of files) {
    resources.push(...parseResources(await readSource(file), file === '-' ? 'stdin' : file));
  }
  if (resources.length === 0) throw new ConfigError('-f', `no resources in ${files.join(', ')}`);
  const remove = values.get('delete') === true;
  for (const resource of resources) {
    if (remove) {
      const existed = await deleteResource(root, resource);
      process.stdout.write(`${resourceName(resource)} ${existed ? 'deleted' : 'not found'}\n`);
    } else {
      await writeResource(root, resource);
      process.stdout.write(`${resourceName(resource)} configured\n`);
    }
  }
  return 0;
}

async function writeResource(root: string, resource: Resource): Promise<void> {
  if (resource.kind === 'Service')
    await writeServiceFile(root, resource.namespace, resource.name, resource.service);
  else await writePolicyFile(root, resource);
}

/** Removes a resource from the state folder; false when it was not there. */
async function deleteResource(root: string, resource: Resource): Promise<boolean> {
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
