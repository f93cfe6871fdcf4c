// `trellis uninject -f FILE|-`: takes out of the pod templates of Kubernetes manifests what
// `trellis inject` (or the injector webhook, for manifests read back from the cluster) put in
// (control/injector/uninject.ts), and prints the manifests on stdout; everything else stays byte
// for byte (manifest-edit.ts). A template with nothing injected is left alone.
import { uninjectPatch } from '../control/injector/uninject.ts';
import { ConfigError } from '../core/errors.ts';
import { parseCommandFlags } from './control.ts';
import { type FlagSpec, formatHelp } from './flags.ts';
import { FILE_FLAG, type Report } from './inject.ts';
import { describe, editManifests, readManifests } from './manifest-edit.ts';
import { SUMMARIES } from './summaries.ts';

export const summary = SUMMARIES.uninject;

const FLAGS: FlagSpec[] = [FILE_FLAG];

/** The manifests with the injection taken out of every template; `report` hears which. */
export function uninjectManifests(source: string, sourceName: string, report: Report): string {
  const { text, changed } = editManifests(
    source,
    sourceName,
    (ref) => uninjectPatch((ref.template ?? {}) as never),
    (ref, message) =>
      report(`warning: ${describe(ref)} (document ${ref.document}) not uninjected: ${message}`),
  );
  for (const ref of changed) report(`${describe(ref)} (document ${ref.document}) uninjected`);
  return text;
}

export async function run(argv: string[]): Promise<number> {
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(
      formatHelp(
        'Usage: trellis uninject -f FILE|- | kubectl apply -f -\n\n' +
          'Takes the proxy, trellis-init, their volumes and annotations out of every pod template.',
        FLAGS,
      ) + '\n',
    );
    return 0;
  }
  const values = parseCommandFlags('uninject', argv, FLAGS);
  const file = values.get('file') as string | undefined;
  if (file === undefined) throw new ConfigError('-f', 'required: the manifests to uninject (- for stdin)');
  const output = uninjectManifests(await readManifests(file), file === '-' ? 'stdin' : file, (line) =>
    process.stderr.write(`${line}\n`),
  );
  process.stdout.write(output);
  return 0;
}
