// `trellis identity`: workload certificates and the certificate authority, from the command line.
//
//   trellis identity NAME | deploy/NAME | po/INSTANCE [-n NS] [--instance I] [-o pem|json]
//       the current certificate chain (PEM, leaf first) of workload NAME, from its proxy's admin
//       listener (GET /identity); the instances come from the state folder's registrations
//   trellis identity status [-o table|json]   the authority (GET /api/identity)
//   trellis identity rotate [-o table|json]   starts an anchor rotation (POST, with the operator token)
//
// The control plane is the state folder's (--state, $TRELLIS_STATE, .trellis) or --control URL's.
// `status` and `rotate` are subcommands first: a workload with one of those names is shown with
// `trellis identity deploy/NAME` (accepted for any workload).
import { X509Certificate } from 'node:crypto';
import { ConfigError } from '../core/errors.ts';
import { readLocalState } from '../control/discovery/local-state.ts';
import type { AuthorityStatus } from '../control/identity/ca.ts';
import { silentLogger } from '../core/log.ts';
import { spiffeUriSan } from '../core/spiffe.ts';
import { pemCertificates } from './check.ts';
import { callControl, errorOf, findControlPlane } from './control-api.ts';
import { type FlagSpec, formatHelp, parseInterleaved } from './flags.ts';
import {
  CONTROL_FLAG,
  NAMESPACE_FLAG,
  OPERATOR_TOKEN_FLAG,
  outputFlag,
  outputOf,
  parseTarget,
  selectRegistrations,
  STATE_FLAG,
  stateFolder,
} from './targeting.ts';
import { SUMMARIES } from './summaries.ts';

export const summary = SUMMARIES.identity;

const FLAGS: FlagSpec[] = [
  NAMESPACE_FLAG,
  {
    name: 'instance',
    kind: 'string',
    help: 'which instance of the workload (default: the first); or po/INSTANCE',
  },
  {
    ...outputFlag(['pem', 'table', 'json']),
    help: 'NAME: pem (default) | json; status, rotate: table (default) | json',
  },
  STATE_FLAG,
  { ...CONTROL_FLAG, help: `${CONTROL_FLAG.help} (status, rotate)` },
  OPERATOR_TOKEN_FLAG,
];

const USAGE = `Usage: trellis identity NAME | deploy/NAME | po/INSTANCE | status | rotate [options]

NAME (or deploy/NAME, also deployment, workload, wl, svc; po/INSTANCE for one instance) prints the
current certificate chain (PEM, leaf first) of the workload's proxy; -o json describes it.
status prints the certificate authority: trust anchors, issuer, rotation phase, counts.
rotate starts a trust anchor rotation without downtime and prints its phase; it changes the
control plane's state, so it sends the operator token (<state>/operator-token, or
--operator-token-file with --control).`;

const TIMEOUT_MS = 5000;

export async function run(argv: string[]): Promise<number> {
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(formatHelp(USAGE, FLAGS) + '\n');
    return 0;
  }
  // Options may come before and after the positional argument.
  const { values, rest } = parseInterleaved(argv, FLAGS);
  if (rest.length === 0)
    throw new ConfigError(
      'NAME',
      'required: a workload (NAME, deploy/NAME, po/INSTANCE), status or rotate (see trellis identity --help)',
    );
  if (rest.length > 1) throw new ConfigError('', `trellis identity: unexpected argument '${rest[1]}'`);
  const stateFlag = values.get('state') as string | undefined;
  const control = values.get('control') as string | undefined;
  const root = stateFolder(stateFlag);
  const arg = rest[0]!;
  if (arg === 'status' || arg === 'rotate') {
    const output = outputOf(values, ['table', 'json']);
    const api = await findControlPlane({
      control,
      stateFlag,
      root,
      tokenFile: values.get('operator-token-file') as string | undefined,
    });
    const rotate = arg === 'rotate';
    const res = await callControl(
      api,
      rotate ? 'POST' : 'GET',
      rotate ? '/api/identity/rotate' : '/api/identity',
    );
    if (res.status !== 200) {
      const hint =
        res.status === 401 && api.tokenFile === null
          ? '\n(with --control, give --operator-token-file FILE)'
          : '';
      process.stderr.write(`trellis identity ${arg}: ${errorOf(res.status, res.body)}${hint}\n`);
      return 1;
    }
    if (output === 'json') process.stdout.write(JSON.stringify(res.body, null, 2) + '\n');
    else if (rotate) {
      const body = res.body as { phase: string; rotation: { nextStepAt: string | null } };
      process.stdout.write(
        `anchor rotation started: phase ${body.phase}, next step at ${body.rotation.nextStepAt}\n`,
      );
    } else process.stdout.write(authorityTable(res.body as AuthorityStatus).join('\n') + '\n');
    return 0;
  }
  if (control !== undefined) throw new ConfigError('--control', 'NAME reads the state folder: give --state');
  const output = outputOf(values, ['pem', 'json']);
  const target = parseTarget(arg, ['workload', 'pod'], true);
  const instance = target.kind === 'pod' ? target.name! : (values.get('instance') as string | undefined);
  if (target.kind === 'pod' && values.has('instance')) {
    throw new ConfigError('--instance', `give po/${target.name} or --instance, not both`);
  }
  return printChain(
    root,
    (values.get('namespace') as string | undefined) ?? 'default',
    target.kind === 'pod' ? null : target.name!,
    instance,
    output,
  );
}

/** `trellis identity status` as lines: the anchors, the issuer, the rotation, the counts. */
export function authorityTable(status: AuthorityStatus): string[] {
  const lines = [`trust domain   ${status.trustDomain}`, `trust anchors  ${status.anchors.length}`];
  for (const a of status.anchors) {
    const role = a.signsIssuer ? '  (signs the issuer)' : '';
    lines.push(`  ${a.fingerprint.slice(0, 12)}  ${a.subject}  expires ${a.notAfter}${role}`);
  }
  const renews =
    status.issuer.renewsAt === null
      ? 'supplied by the operator: not renewed here'
      : `renews at ${status.issuer.renewsAt}`;
  lines.push(`issuer         ${status.issuer.subject}  expires ${status.issuer.notAfter}, ${renews}`);
  const next = status.rotation.nextStepAt === null ? '' : `, next step at ${status.rotation.nextStepAt}`;
  lines.push(`rotation       ${status.rotation.phase}${next}`);
  lines.push(`issued         ${status.issued} certificates since the control plane started`);
  return lines;
}

/**
 * Prints the chain of one instance of workload `name` (null: the instance `instance`, of whichever
 * workload); 1 with a message when there is none.
 */
async function printChain(
  root: string,
  namespace: string,
  name: string | null,
  instance: string | undefined,
  output: string,
): Promise<number> {
  const local = await readLocalState(root, new Map(), silentLogger);
  const instances = selectRegistrations(local.workloads, { namespace, workload: name, instance }).sort(
    (a, b) => (a.name < b.name ? -1 : 1),
  );
  const what = name ?? instances[0]?.spec.service ?? '';
  if (instances.length === 0) {
    const which =
      instance === undefined
        ? `workload ${name}`
        : name === null
          ? `instance ${instance}`
          : `instance ${instance} of workload ${name}`;
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
            `trellis identity: ${what} has ${instances.length} instances; showing ${w.name} (see --instance)\n`,
          );
        }
        const pem = text.endsWith('\n') ? text : text + '\n';
        if (output === 'json') {
          const described = {
            namespace,
            workload: w.spec.service,
            instance: w.name,
            chain: describeChain(pem),
            pem,
          };
          process.stdout.write(JSON.stringify(described, null, 2) + '\n');
        } else process.stdout.write(pem);
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
    `trellis identity: no certificate for workload ${what}.${namespace}:\n  ${problems.join('\n  ')}\n`,
  );
  return 1;
}

/** Each certificate of a PEM chain: subject, SPIFFE ID (leaf), validity, SHA-256 fingerprint. */
function describeChain(pem: string): object[] {
  let certs: X509Certificate[];
  try {
    certs = pemCertificates(pem);
  } catch {
    return [];
  }
  return certs.map((c) => ({
    subject: c.subject,
    identity: spiffeUriSan(c.subjectAltName),
    notBefore: new Date(c.validFrom).toISOString(),
    notAfter: new Date(c.validTo).toISOString(),
    fingerprint: c.fingerprint256.replaceAll(':', '').toLowerCase(),
  }));
}
