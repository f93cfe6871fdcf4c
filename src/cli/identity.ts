// `trellis identity`: workload certificates and the certificate authority, from the command line.
//
//   trellis identity NAME [--namespace NS] [--instance I] [--state DIR]
//       the current certificate chain (PEM, leaf first) of workload NAME, from its proxy's admin
//       listener (GET /identity); the instances come from the state folder's registrations
//   trellis identity status [--state DIR | --control URL]   the authority (GET /api/identity)
//   trellis identity rotate [--state DIR | --control URL]   starts an anchor rotation
//
// `status` and `rotate` are subcommands first: a workload with one of those names is shown with
// `trellis identity workload/NAME` (accepted for any workload).
import { ConfigError, TrellisError } from '../core/errors.ts';
import { readLocalState } from '../control/discovery/local-state.ts';
import { silentLogger } from '../core/log.ts';
import { controlUrl } from './control-url.ts';
import { type FlagSpec, formatHelp, parseInterleaved } from './flags.ts';

export const summary = 'certificate chain of a workload; status and anchor rotation of the CA';

const FLAGS: FlagSpec[] = [
  { name: 'namespace', kind: 'string', help: 'the workload namespace (default: default); also -n' },
  { name: 'instance', kind: 'string', help: 'which instance of the workload (default: the first)' },
  { name: 'state', kind: 'string', help: 'the state folder of `trellis up` (default .trellis)' },
  { name: 'control', kind: 'string', help: "the control plane's HTTP API URL (status, rotate)" },
];

const USAGE = `Usage: trellis identity NAME | workload/NAME | status | rotate [options]

NAME (or workload/NAME) prints the current certificate chain (PEM, leaf first) of the workload's proxy.
status prints the certificate authority: trust anchors, issuer, rotation phase, counts.
rotate starts a trust anchor rotation without downtime and prints its phase.`;

const TIMEOUT_MS = 5000;

export async function run(argv: string[]): Promise<number> {
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(formatHelp(USAGE, FLAGS) + '\n');
    return 0;
  }
  // Options may come before and after the positional argument.
  const { values, rest } = parseInterleaved(argv, FLAGS, { '-n': '--namespace' });
  if (rest.length !== 1)
    throw new ConfigError('', rest.length === 0 ? USAGE : `unexpected argument '${rest[1]}'`);
  const state = values.get('state') as string | undefined;
  const control = values.get('control') as string | undefined;
  const arg = rest[0]!;
  if (arg === 'status' || arg === 'rotate') {
    const base = await controlUrl(control, state);
    const res = await request(
      base,
      arg === 'rotate' ? 'POST' : 'GET',
      arg === 'rotate' ? '/api/identity/rotate' : '/api/identity',
    );
    if (res.status !== 200) {
      const error = (res.body as { error?: string } | null)?.error ?? `HTTP ${res.status}`;
      process.stderr.write(`trellis identity ${arg}: ${error}\n`);
      return 1;
    }
    if (arg === 'rotate') {
      const body = res.body as { phase: string; rotation: { nextStepAt: string | null } };
      process.stdout.write(
        `anchor rotation started: phase ${body.phase}, next step at ${body.rotation.nextStepAt}\n`,
      );
    } else process.stdout.write(JSON.stringify(res.body, null, 2) + '\n');
    return 0;
  }
  if (control !== undefined) throw new ConfigError('--control', 'NAME reads the state folder: give --state');
  const name = arg.startsWith('workload/') ? arg.slice('workload/'.length) : arg;
  return printChain(
    state ?? '.trellis',
    (values.get('namespace') as string | undefined) ?? 'default',
    name,
    values.get('instance') as string | undefined,
  );
}

/** Prints the chain of one instance of workload `name`; 1 with a message when there is none. */
async function printChain(
  root: string,
  namespace: string,
  name: string,
  instance: string | undefined,
): Promise<number> {
  const local = await readLocalState(root, new Map(), silentLogger);
  const instances = local.workloads
    .filter(
      (w) =>
        w.namespace === namespace &&
        w.spec.service === name &&
        (instance === undefined || w.name === instance),
    )
    .sort((a, b) => (a.name < b.name ? -1 : 1));
  if (instances.length === 0) {
    const which = instance === undefined ? `workload ${name}` : `instance ${instance} of workload ${name}`;
    process.stderr.write(`trellis identity: no ${which} in namespace ${namespace} (state folder ${root})\n`);
    return 1;
  }
  const problems: string[] = [];
  for (const w of instances) {
    if (w.spec.admin === undefined) {
      problems.push(`${w.name}: registered without an admin address`);
      continue;
    }
    // The admin listener usually binds the wildcard address; ask it on loopback.
    const admin = w.spec.admin.replace(/^0\.0\.0\.0:/, '127.0.0.1:').replace(/^\[::\]:/, '[::1]:');
    try {
      const res = await fetch(`http://${admin}/identity`, { signal: AbortSignal.timeout(TIMEOUT_MS) });
      const text = await res.text();
      if (res.status === 200) {
        if (instances.length > 1 && instance === undefined) {
          process.stderr.write(
            `trellis identity: ${name} has ${instances.length} instances; showing ${w.name} (see --instance)\n`,
          );
        }
        process.stdout.write(text.endsWith('\n') ? text : text + '\n');
        return 0;
      }
      problems.push(
        res.status === 404
          ? `${w.name}: its proxy has no identity yet`
          : `${w.name}: HTTP ${res.status} from ${admin}`,
      );
    } catch (error) {
      problems.push(`${w.name}: cannot reach its proxy at ${admin} (${(error as Error).message})`);
    }
  }
  process.stderr.write(
    `trellis identity: no certificate for workload ${name}.${namespace}:\n  ${problems.join('\n  ')}\n`,
  );
  return 1;
}

async function request(
  base: string,
  method: string,
  path: string,
): Promise<{ status: number; body: unknown }> {
  try {
    const res = await fetch(`${base}${path}`, { method, signal: AbortSignal.timeout(TIMEOUT_MS) });
    const text = await res.text();
    let body: unknown = null;
    try {
      body = JSON.parse(text);
    } catch {
      body = { error: text.trim() };
    }
    return { status: res.status, body };
  } catch (error) {
    throw new TrellisError(
      'TRELLIS_ERR_CONTROL_PLANE',
      `cannot reach the control plane at ${base}: ${(error as Error).message}`,
    );
  }
}
