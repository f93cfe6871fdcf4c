// `trellis inject -f FILE|-`: adds the proxy to the pods of Kubernetes manifests on the client
// side, as the injector webhook does in the cluster (like `linkerd inject --manual`), and prints
// the manifests on stdout: `trellis inject -f app.yaml | kubectl apply -f -`. The same decision
// and the same JSONPatch as the webhook (control/injector/admission.ts's decide), applied to each
// pod template of the file (manifest-edit.ts: everything else stays byte for byte), so the pod is
// the one the webhook would make. Running it is the opt-in: every template is injected unless it
// says `trellis.dev/inject: disabled`; a template already injected is left alone (injecting twice
// is injecting once); one the injector cannot handle (hostNetwork, the control plane's namespace,
// a malformed pod) is left unchanged with a warning on stderr. What the proxy gets comes from the
// install's flags, over `--config FILE` (the installed ConfigMap trellis-config's config.yaml).
import { decide, INJECT_ANNOTATION } from '../control/injector/admission.ts';
import { readInjectorConfig } from '../control/injector/config.ts';
import type { InjectorConfig } from '../control/injector/proxy-containers.ts';
import { ConfigError } from '../core/errors.ts';
import { parseCommandFlags } from './control.ts';
import { type FlagSpec, formatHelp } from './flags.ts';
import { DEFAULT_INJECTOR_CONFIG, INJECTOR_FLAGS, injectorConfigFromFlags } from './install-flags.ts';
import { describe, editManifests, readManifests, type PodTemplateRef } from './manifest-edit.ts';
import { SUMMARIES } from './summaries.ts';

export const summary = SUMMARIES.inject;

export const FILE_FLAG: FlagSpec = {
  name: 'file',
  short: 'f',
  kind: 'string',
  help: 'the manifests (multi-document YAML or JSON); - reads standard input',
};

const FLAGS: FlagSpec[] = [
  FILE_FLAG,
  {
    name: 'config',
    kind: 'string',
    help: "the injector's config.yaml (ConfigMap trellis-config in namespace trellis); flags override it",
  },
  ...INJECTOR_FLAGS,
];

const USAGE = `Usage: trellis inject -f FILE|- [options] | kubectl apply -f -

Adds the proxy to every pod template of the manifests (Pods, Deployments, StatefulSets,
DaemonSets, ReplicaSets, Jobs, CronJobs, Lists of them) as the injector does in the cluster, and
prints the manifests; everything else is printed unchanged. A template annotated
${INJECT_ANNOTATION}: disabled, or one that cannot be injected, is left as it is (a warning on stderr).
Give the flags given to trellis install, or --config with the installed configuration.`;

/** Running `trellis inject` opts every template in, as a namespace annotated `enabled` would. */
const OPTED_IN = { [INJECT_ANNOTATION]: 'enabled' } as const;

/** Where `trellis inject` and `trellis uninject` tell what they did (stderr). */
export type Report = (line: string) => void;

const at = (ref: PodTemplateRef): string => `${describe(ref)} (document ${ref.document})`;

/** The manifests with every template injected; `report` hears what happened to each. */
export function injectManifests(
  source: string,
  sourceName: string,
  config: InjectorConfig,
  report: Report,
): string {
  const { text, changed } = editManifests(
    source,
    sourceName,
    (ref) => {
      if (typeof ref.template !== 'object' || ref.template === null) {
        report(`warning: ${at(ref)} not injected: no pod template at ${ref.path.join('.')}`);
        return [];
      }
      try {
        const decision = decide(ref.template as never, ref.namespace, OPTED_IN, config);
        if (decision.action === 'inject') return decision.patch;
        if (decision.action === 'skip') report(`warning: ${at(ref)} not injected: ${decision.reason}`);
        else if (decision.reason === 'already injected') report(`${at(ref)} already injected`);
        else report(`warning: ${at(ref)} not injected: ${INJECT_ANNOTATION} is disabled`);
      } catch (error) {
        report(`warning: ${at(ref)} not injected: ${(error as Error).message}`);
      }
      return [];
    },
    (ref, message) => report(`warning: ${at(ref)} not injected: ${message}`),
  );
  for (const ref of changed) report(`${at(ref)} injected`);
  return text;
}

export async function run(argv: string[]): Promise<number> {
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(formatHelp(USAGE, FLAGS) + '\n');
    return 0;
  }
  const values = parseCommandFlags('inject', argv, FLAGS);
  const file = values.get('file') as string | undefined;
  if (file === undefined) throw new ConfigError('-f', 'required: the manifests to inject (- for stdin)');
  const configFile = values.get('config') as string | undefined;
  const base =
    configFile === undefined ? DEFAULT_INJECTOR_CONFIG : await readInjectorConfig('--config', configFile);
  const config = injectorConfigFromFlags(values, base);
  const output = injectManifests(await readManifests(file), file === '-' ? 'stdin' : file, config, (line) =>
    process.stderr.write(`${line}\n`),
  );
  process.stdout.write(output);
  return 0;
}
