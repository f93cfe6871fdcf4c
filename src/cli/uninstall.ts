// `trellis uninstall`: prints the objects `trellis install` and `trellis install --crds` created,
// names only, for `trellis uninstall | kubectl delete -f -`: the webhook first (so that no pod
// creation waits on an injector being deleted), the cluster-wide RBAC, the namespace `trellis`
// (and with it everything in it), and the CRDs last (deleting them deletes every Server and
// AuthorizationPolicy in the cluster). Pods injected earlier keep their proxies until restarted.
import { parseCommandFlags } from './control.ts';
import { type FlagSpec, formatHelp } from './flags.ts';
import { readCrds } from './install.ts';
import { toYaml, uninstallObjects } from './install-manifests.ts';
import { SUMMARIES } from './summaries.ts';

export const summary = SUMMARIES.uninstall;

const FLAGS: FlagSpec[] = [];

export async function run(argv: string[]): Promise<number> {
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(formatHelp('Usage: trellis uninstall | kubectl delete -f -', FLAGS) + '\n');
    return 0;
  }
  parseCommandFlags('uninstall', argv, FLAGS);
  const { crds } = await readCrds();
  process.stdout.write(toYaml(uninstallObjects(crds)));
  return 0;
}
