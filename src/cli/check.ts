// `trellis check`: is the one-machine mesh healthy, and is any certificate about to expire? Like
// `linkerd check`, one line per check, ✔ (ok), ‼ (warning) or ✖ (error); exit 1 on any error,
// 0 otherwise (warnings included), so scripts can gate on it.
//
// It reads the state folder: control.json (the control plane answers /healthz), trust-anchor.pem
// (the anchors), and each registered workload's proxy through its admin listener: /ready and
// /identity (the chain it presents). Each chain must lead to a trust anchor and name the identity
// the workload registered; every certificate of it (leaf, issuer) and every anchor is checked for
// expiry. "Close to expiry" is less than 20% of the certificate's lifetime left (a leaf renews at
// 70%, the issuer at two thirds, so a certificate that far along is one whose renewal is failing),
// or, for a trust anchor, less than 60 days (anchors are rotated by an operator: `trellis identity
// rotate`). Expired or not yet valid is an error.
//
// `-n NS` and `deploy/NAME` or `po/INSTANCE` narrow the workloads checked (a target that matches no
// registration is an error). With `--control URL` instead of a state folder (a control plane
// elsewhere, say on Kubernetes) only what its HTTP API shows is checked: /healthz, and the expiry
// of the trust anchors and the issuer from /api/identity. `--pre` and `--kubernetes` check a
// cluster instead, in groups (check-kubernetes.ts), each failure with a hint.
import { X509Certificate } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ConfigError } from '../core/errors.ts';
import { silentLogger } from '../core/log.ts';
import type { AuthorityStatus } from '../control/identity/ca.ts';
import { readControlFile } from '../api/control-file.ts';
import { readLocalState } from '../control/discovery/local-state.ts';
import { spiffeUriSan } from '../core/spiffe.ts';
import { callControl, errorOf, findControlPlane } from './control-api.ts';
import { type FlagSpec, formatHelp, parseInterleaved } from './flags.ts';
import { checkKubernetes } from './check-kubernetes.ts';
import { CLUSTER_FLAGS, clusterConfig } from './kube-cluster.ts';
import {
  CONTROL_FLAG,
  outputFlag,
  outputOf,
  parseTarget,
  selectRegistrations,
  STATE_FLAG,
  stateFolder,
  type Target,
} from './targeting.ts';
import { SUMMARIES } from './summaries.ts';

export const summary = SUMMARIES.check;

const OUTPUTS = ['table', 'json'] as const;
const FLAGS: FlagSpec[] = [
  {
    name: 'namespace',
    short: 'n',
    kind: 'string',
    help: 'only the workloads of this namespace (default: all)',
  },
  outputFlag(OUTPUTS),
  STATE_FLAG,
  { ...CONTROL_FLAG, help: `${CONTROL_FLAG.help}: checks only what its API shows` },
  {
    name: 'pre',
    kind: 'boolean',
    help: 'Kubernetes: can this cluster take Trellis (API, version, RBAC to install, CRDs)',
  },
  {
    name: 'kubernetes',
    kind: 'boolean',
    help: 'Kubernetes: check the installed Trellis (existence, config, identity, webhook, version)',
  },
  {
    name: 'proxy',
    kind: 'boolean',
    help: 'with --kubernetes: also the data plane (injected pods: proxy ready, of this version, certificate valid)',
  },
  ...CLUSTER_FLAGS,
];

const USAGE = `Usage: trellis check [options] [deploy/NAME | po/INSTANCE]

Checks the control plane, the trust anchors and every registered workload's proxy and certificate
chain (-n, deploy/NAME or po/INSTANCE: only those). Warns when a certificate has less than 20% of
its lifetime left (a trust anchor: less than 60 days); exits 1 when a check fails.

On Kubernetes (--kubeconfig, --context, else kubectl's defaults): trellis check --pre before
installing, trellis check --kubernetes after; each failed check says how to fix it.`;

/** Which registrations to check. */
export interface CheckScope {
  readonly namespace?: string | undefined;
  readonly target?: Target | null;
}

export type Level = 'ok' | 'warn' | 'error';

export interface CheckResult {
  readonly level: Level;
  readonly check: string;
  readonly detail: string;
  /** The Kubernetes checks' group (kubernetes-api, trellis-identity, ...; check-kubernetes.ts). */
  readonly group?: string;
  /** How to fix a failed check. */
  readonly hint?: string;
}

const ANCHOR_WARN_MS = 60 * 24 * 3600 * 1000;
const MARK: Record<Level, string> = { ok: '✔', warn: '‼', error: '✖' };

export async function run(argv: string[]): Promise<number> {
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(formatHelp(USAGE, FLAGS) + '\n');
    return 0;
  }
  const { values, rest } = parseInterleaved(argv, FLAGS);
  if (rest.length > 1) throw new ConfigError('', `trellis check: unexpected argument '${rest[1]}'`);
  const output = outputOf(values, OUTPUTS);
  const pre = values.get('pre') === true;
  if (pre || values.get('kubernetes') === true) {
    if (rest.length > 0)
      throw new ConfigError('', `trellis check: unexpected argument '${rest[0]}' on Kubernetes`);
    const results = await checkKubernetes(
      clusterConfig(values),
      pre,
      Date.now(),
      values.get('proxy') === true,
    );
    return report(results, output);
  }
  const target = rest.length === 0 ? null : parseTarget(rest[0]!, ['workload', 'pod'], true);
  const stateFlag = values.get('state') as string | undefined;
  const control = values.get('control') as string | undefined;
  const namespace = values.get('namespace') as string | undefined;
  if (control !== undefined && (target !== null || namespace !== undefined)) {
    throw new ConfigError('--control', 'workloads are checked through the state folder: give --state');
  }
  const root = stateFolder(stateFlag);
  const results =
    control === undefined
      ? await checkMesh(root, Date.now(), { namespace, target })
      : await checkControlPlane((await findControlPlane({ control, stateFlag, root })).base, Date.now());
  return report(results, output);
}

/** Prints the results (a Kubernetes group under its name, a failure's hint under it); the exit code. */
function report(results: readonly CheckResult[], output: string): number {
  if (output === 'json') process.stdout.write(JSON.stringify(results, null, 2) + '\n');
  else {
    let group: string | undefined;
    for (const r of results) {
      if (r.group !== undefined && r.group !== group) {
        process.stdout.write(`${group === undefined ? '' : '\n'}${r.group}\n${'-'.repeat(r.group.length)}\n`);
        group = r.group;
      }
      process.stdout.write(`${MARK[r.level]} ${r.check}: ${r.detail}\n`);
      if (r.hint !== undefined && r.level !== 'ok') process.stdout.write(`    hint: ${r.hint}\n`);
    }
  }
  return results.some((r) => r.level === 'error') ? 1 : 0;
}

/** Every check over the state folder `root` (of the workloads in `scope`), at time `now`. */
export async function checkMesh(root: string, now: number, scope: CheckScope = {}): Promise<CheckResult[]> {
  const results: CheckResult[] = [];
  const control = await readControlFile(root);
  if (control === null) {
    results.push({
      level: 'error',
      check: 'control plane',
      detail: `none runs over ${root} (start \`trellis up\`)`,
    });
    return results;
  }
  results.push(await probe('control plane', `http://${control.http}/healthz`, 'answers /healthz'));

  let anchors: X509Certificate[] = [];
  try {
    anchors = pemCertificates(await readFile(join(root, 'trust-anchor.pem'), 'utf8'));
    if (anchors.length === 0) throw new Error('no certificate in it');
    results.push({ level: 'ok', check: 'trust anchors', detail: `${anchors.length} in trust-anchor.pem` });
    for (const anchor of anchors)
      results.push(expiryCheck(`trust anchor ${fingerprint(anchor)}`, anchor, now, true));
  } catch (error) {
    results.push({
      level: 'error',
      check: 'trust anchors',
      detail: `trust-anchor.pem: ${(error as Error).message}`,
    });
  }

  const state = await readLocalState(root, new Map(), silentLogger);
  const { namespace, target } = scope;
  const workloads = selectRegistrations(state.workloads, {
    namespace,
    workload: target?.kind === 'workload' ? target.name : null,
    instance: target?.kind === 'pod' ? (target.name ?? undefined) : undefined,
  });
  if (target != null && workloads.length === 0) {
    const what = target.kind === 'pod' ? `instance ${target.name}` : `workload ${target.name}`;
    results.push({
      level: 'error',
      check: what,
      detail: `not registered${namespace === undefined ? '' : ` in namespace ${namespace}`} (state folder ${root})`,
    });
  }
  for (const w of workloads) {
    const name = `workload ${w.namespace}/${w.name}`;
    if (w.spec.admin === undefined) {
      results.push({
        level: 'warn',
        check: name,
        detail: 'registered without an admin address: cannot check its proxy',
      });
      continue;
    }
    const ready = await probe(`${name} proxy`, `http://${w.spec.admin}/ready`, 'ready');
    results.push(ready);
    if (ready.level !== 'ok' || !w.spec.meshed) continue;
    results.push(
      ...(await chainChecks(name, `http://${w.spec.admin}/identity`, w.spec.identity ?? '', anchors, now)),
    );
  }
  return results;
}

/**
 * The checks of a control plane known only by its HTTP API: /healthz, and from /api/identity the
 * expiry of the trust anchors (warn under 60 days) and of the issuer (warn under one leaf lifetime:
 * the leaves it signs would outlive it).
 */
export async function checkControlPlane(base: string, now: number): Promise<CheckResult[]> {
  const results = [await probe('control plane', `${base}/healthz`, 'answers /healthz')];
  if (results[0]!.level !== 'ok') return results;
  const { status, body } = await callControl({ base, tokenFile: null }, 'GET', '/api/identity');
  if (status !== 200) {
    results.push({
      level: 'error',
      check: 'certificate authority',
      detail: `/api/identity: ${errorOf(status, body)}`,
    });
    return results;
  }
  const authority = body as AuthorityStatus;
  for (const anchor of authority.anchors) {
    results.push(
      dateCheck(`trust anchor ${anchor.fingerprint.slice(0, 12)}`, anchor.notAfter, now, ANCHOR_WARN_MS),
    );
  }
  results.push(dateCheck('issuer', authority.issuer.notAfter, now, authority.leafLifetimeMs));
  return results;
}

/**
 * ok, warn (less than `warnMs` left) or error (expired), from an expiry date alone: `notAfter` as
 * the detail shows it, and `expires`, how it shows it while it is not reached (default: the same).
 */
function dateCheck(
  check: string,
  notAfter: string,
  now: number,
  warnMs: number,
  expires = notAfter,
): CheckResult {
  const left = Date.parse(notAfter) - now;
  if (!(left > 0)) return { level: 'error', check, detail: `expired ${notAfter}` };
  const detail = `expires ${expires} (in ${humanDuration(left)})`;
  return left < warnMs
    ? { level: 'warn', check, detail: `${detail}: close to expiry` }
    : { level: 'ok', check, detail };
}

/** The chain a proxy presents: it leads to an anchor, names the registered identity, and is not expiring. */
async function chainChecks(
  name: string,
  url: string,
  expected: string,
  anchors: readonly X509Certificate[],
  now: number,
): Promise<CheckResult[]> {
  let chain: X509Certificate[];
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(3000) });
    if (res.status === 404)
      return [{ level: 'error', check: `${name} identity`, detail: 'its proxy has no certificate' }];
    if (res.status !== 200) throw new Error(`HTTP ${res.status}`);
    chain = pemCertificates(await res.text());
    if (chain.length === 0) throw new Error('no certificate in the answer');
  } catch (error) {
    return [{ level: 'error', check: `${name} identity`, detail: `${url}: ${(error as Error).message}` }];
  }
  const out: CheckResult[] = [];
  const leaf = chain[0]!;
  const id = spiffeUriSan(leaf.subjectAltName) ?? '(none)';
  if (expected !== '' && id !== expected) {
    out.push({
      level: 'error',
      check: `${name} identity`,
      detail: `presents ${id}, registered as ${expected}`,
    });
  } else {
    const trusted = verifiesTo(chain, anchors);
    out.push(
      trusted
        ? { level: 'ok', check: `${name} identity`, detail: `${id}, chain verifies to a trust anchor` }
        : {
            level: 'error',
            check: `${name} identity`,
            detail: `${id}: the chain does not lead to a trust anchor`,
          },
    );
  }
  out.push(expiryCheck(`${name} certificate`, leaf, now, false));
  for (const issuer of chain.slice(1))
    out.push(expiryCheck(`issuer ${fingerprint(issuer)}`, issuer, now, false));
  return out;
}

/** Whether each certificate of the chain is signed by the next and the last by one of the anchors. */
export function verifiesTo(chain: readonly X509Certificate[], anchors: readonly X509Certificate[]): boolean {
  for (let i = 0; i + 1 < chain.length; i++) {
    if (!chain[i]!.checkIssued(chain[i + 1]!) || !chain[i]!.verify(chain[i + 1]!.publicKey)) return false;
  }
  const top = chain[chain.length - 1]!;
  return anchors.some((a) => top.checkIssued(a) && top.verify(a.publicKey));
}

/** ok, warn (less than 20% of the lifetime left; an anchor: or less than 60 days) or error (not valid now). */
export function expiryCheck(check: string, cert: X509Certificate, now: number, anchor: boolean): CheckResult {
  const from = Date.parse(cert.validFrom);
  const to = Date.parse(cert.validTo);
  if (now < from) return { level: 'error', check, detail: `not valid before ${cert.validFrom}` };
  const lifetimeWarnMs = 0.2 * (to - from);
  const warnMs = anchor ? Math.max(lifetimeWarnMs, ANCHOR_WARN_MS) : lifetimeWarnMs;
  return dateCheck(check, cert.validTo, now, warnMs, new Date(to).toISOString());
}

async function probe(check: string, url: string, what: string): Promise<CheckResult> {
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(3000) });
    await res.arrayBuffer();
    if (res.status === 200) return { level: 'ok', check, detail: what };
    return { level: 'error', check, detail: `${url}: HTTP ${res.status}` };
  } catch (error) {
    return { level: 'error', check, detail: `${url}: ${(error as Error).message}` };
  }
}

export function pemCertificates(text: string): X509Certificate[] {
  const blocks = text.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
  return blocks.map((b) => new X509Certificate(b));
}

function fingerprint(cert: X509Certificate): string {
  return cert.fingerprint256.replaceAll(':', '').slice(0, 12).toLowerCase();
}

export function humanDuration(ms: number): string {
  const s = Math.floor(ms / 1000);
  if (s < 120) return `${s}s`;
  if (s < 7200) return `${Math.floor(s / 60)}m`;
  if (s < 172_800) return `${Math.floor(s / 3600)}h`;
  return `${Math.floor(s / 86_400)}d`;
}
