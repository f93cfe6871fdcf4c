// The iptables rules that make interception transparent (`trellis init`), modelled on Linkerd's
// proxy-init and Istio's istio-iptables. Everything here is pure: flags in, rules (argv lists) and
// iptables-restore input out, so it is unit-tested without root; src/cli/init.ts runs them.
//
// Layout in the nat table (the same for ip6tables, with ::1):
//   PREROUTING -> TRELLIS_PREROUTING: ignored ports RETURN, other TCP -> TRELLIS_INBOUND_REDIRECT
//   TRELLIS_INBOUND_REDIRECT: REDIRECT to the proxy's inbound port
//   OUTPUT -> TRELLIS_OUTPUT: the proxy's own uid/gid, loopback, ignored ports and subnets RETURN,
//                             other TCP -> TRELLIS_OUTBOUND_REDIRECT
//   TRELLIS_OUTBOUND_REDIRECT: REDIRECT to the proxy's outbound port
// Idempotence: applying declares our chains (which flushes and rebuilds them, iptables-restore
// --noflush) and adds a jump from PREROUTING/OUTPUT only when it is not there yet.
import net from 'node:net';
import { ConfigError } from '../../core/errors.ts';
import { isPort } from '../../core/schema.ts';

export const CHAINS = {
  prerouting: 'TRELLIS_PREROUTING',
  inboundRedirect: 'TRELLIS_INBOUND_REDIRECT',
  output: 'TRELLIS_OUTPUT',
  outboundRedirect: 'TRELLIS_OUTBOUND_REDIRECT',
} as const;

const OWN_CHAINS: readonly string[] = Object.values(CHAINS);

/** The built-in chains we hook into, and the chain each one jumps to. */
const JUMPS: readonly (readonly [builtin: string, target: string])[] = [
  ['PREROUTING', CHAINS.prerouting],
  ['OUTPUT', CHAINS.output],
];

export type IpFamily = 4 | 6;

/** An inclusive range of TCP ports (a single port has first === last). */
export interface PortRange {
  readonly first: number;
  readonly last: number;
}

export interface Cidr {
  readonly family: IpFamily;
  readonly address: string;
  readonly prefix: number;
}

export interface InterceptionOptions {
  readonly inboundPort: number;
  readonly outboundPort: number;
  /** The proxy's admin port: probes and metrics scrapes reach it directly, never redirected. */
  readonly adminPort: number;
  readonly proxyUid: number | undefined;
  readonly proxyGid: number | undefined;
  readonly inboundPortsToIgnore: readonly PortRange[];
  readonly outboundPortsToIgnore: readonly PortRange[];
  readonly subnetsToIgnore: readonly Cidr[];
}

/** A TCP port 1..65535 written in decimal. */
export function parsePort(text: string, flag: string): number {
  const s = text.trim();
  const n = /^\d{1,5}$/.test(s) ? Number(s) : NaN;
  if (!isPort(n)) throw new ConfigError(flag, `expected a TCP port 1..65535, got '${text}'`);
  return n;
}

/** A uid or gid: a decimal integer 0..4294967294. */
export function parseId(text: string, flag: string): number {
  const s = text.trim();
  const n = /^\d{1,10}$/.test(s) ? Number(s) : NaN;
  if (!(n >= 0 && n <= 4294967294))
    throw new ConfigError(flag, `expected a numeric id 0..4294967294, got '${text}'`);
  return n;
}

/** Sorts ranges and merges the ones that overlap or touch, so each port is listed once. */
export function mergePortRanges(ranges: readonly PortRange[]): PortRange[] {
  const sorted = [...ranges].sort((a, b) => a.first - b.first || a.last - b.last);
  const merged: PortRange[] = [];
  for (const r of sorted) {
    const prev = merged[merged.length - 1];
    if (prev && r.first <= prev.last + 1)
      merged[merged.length - 1] = { first: prev.first, last: Math.max(prev.last, r.last) };
    else merged.push({ first: r.first, last: r.last });
  }
  return merged;
}

/** "80,443,8000-8100" -> merged ranges. The empty string is the empty list. */
export function parsePortList(text: string, flag: string): PortRange[] {
  const ranges: PortRange[] = [];
  for (const raw of text.split(',')) {
    const item = raw.trim();
    if (item === '') {
      if (text.trim() === '') continue;
      throw new ConfigError(flag, `empty item in port list '${text}'`);
    }
    const dash = item.indexOf('-');
    if (dash < 0) {
      const port = parsePort(item, flag);
      ranges.push({ first: port, last: port });
      continue;
    }
    const first = parsePort(item.slice(0, dash), flag);
    const last = parsePort(item.slice(dash + 1), flag);
    if (first > last) throw new ConfigError(flag, `port range '${item}' ends before it starts`);
    ranges.push({ first, last });
  }
  return mergePortRanges(ranges);
}

export function formatPortList(ranges: readonly PortRange[]): string {
  return ranges.map((r) => (r.first === r.last ? `${r.first}` : `${r.first}-${r.last}`)).join(',');
}

/** "10.0.0.0/8,fd00::/8,198.18.0.1" -> CIDRs; a bare address is a single host (/32 or /128). */
export function parseCidrList(text: string, flag: string): Cidr[] {
  const cidrs: Cidr[] = [];
  if (text.trim() === '') return cidrs;
  for (const raw of text.split(',')) {
    const item = raw.trim();
    const slash = item.indexOf('/');
    const address = slash < 0 ? item : item.slice(0, slash);
    const family: IpFamily | 0 = net.isIPv4(address)
      ? 4
      : net.isIPv6(address) && !address.includes('%')
        ? 6
        : 0;
    if (family === 0) throw new ConfigError(flag, `'${item}' is not an IPv4 or IPv6 address or CIDR`);
    const maxPrefix = family === 4 ? 32 : 128;
    const prefixText = slash < 0 ? String(maxPrefix) : item.slice(slash + 1);
    const prefix = /^\d{1,3}$/.test(prefixText) ? Number(prefixText) : NaN;
    if (!(prefix >= 0 && prefix <= maxPrefix)) {
      throw new ConfigError(flag, `'${item}' has a bad prefix length (IPv${family}: 0..${maxPrefix})`);
    }
    cidrs.push({ family, address, prefix });
  }
  return cidrs;
}

export function formatCidr(c: Cidr): string {
  return `${c.address}/${c.prefix}`;
}

function comment(text: string): string[] {
  return ['-m', 'comment', '--comment', `trellis/${text}`];
}

function dport(r: PortRange): string {
  return r.first === r.last ? `${r.first}` : `${r.first}:${r.last}`;
}

/** The rules of our own chains, as iptables argv lists (without the -t nat). */
export function buildChainRules(o: InterceptionOptions, family: IpFamily): string[][] {
  const loopback = family === 4 ? '127.0.0.1/32' : '::1/128';
  const inboundIgnored = mergePortRanges([
    ...o.inboundPortsToIgnore,
    { first: o.inboundPort, last: o.inboundPort },
    { first: o.adminPort, last: o.adminPort },
  ]);
  const rules: string[][] = [];
  const add = (chain: string, ...spec: string[]) => rules.push(['-A', chain, ...spec]);

  // Inbound: everything TCP that arrives goes to the proxy's inbound port, except the proxy's own
  // ports (peers dial the inbound port directly; probes and scrapes dial the admin port).
  add(
    CHAINS.inboundRedirect,
    '-p',
    'tcp',
    ...comment('redirect-to-inbound-port'),
    '-j',
    'REDIRECT',
    '--to-ports',
    `${o.inboundPort}`,
  );
  for (const r of inboundIgnored) {
    add(
      CHAINS.prerouting,
      '-p',
      'tcp',
      '--dport',
      dport(r),
      ...comment('ignore-inbound-port'),
      '-j',
      'RETURN',
    );
  }
  add(CHAINS.prerouting, '-p', 'tcp', ...comment('inbound'), '-j', CHAINS.inboundRedirect);

  // Outbound: what the app sends goes to the outbound port. The proxy's own connections must not
  // (or they would loop back into it), nor loopback traffic, nor what the operator excluded.
  add(
    CHAINS.outboundRedirect,
    '-p',
    'tcp',
    ...comment('redirect-to-outbound-port'),
    '-j',
    'REDIRECT',
    '--to-ports',
    `${o.outboundPort}`,
  );
  if (o.proxyUid !== undefined) {
    add(
      CHAINS.output,
      '-m',
      'owner',
      '--uid-owner',
      `${o.proxyUid}`,
      ...comment('ignore-proxy-uid'),
      '-j',
      'RETURN',
    );
  }
  if (o.proxyGid !== undefined) {
    add(
      CHAINS.output,
      '-m',
      'owner',
      '--gid-owner',
      `${o.proxyGid}`,
      ...comment('ignore-proxy-gid'),
      '-j',
      'RETURN',
    );
  }
  add(CHAINS.output, '-o', 'lo', ...comment('ignore-loopback-interface'), '-j', 'RETURN');
  add(CHAINS.output, '-d', loopback, ...comment('ignore-loopback-address'), '-j', 'RETURN');
  for (const r of o.outboundPortsToIgnore) {
    add(CHAINS.output, '-p', 'tcp', '--dport', dport(r), ...comment('ignore-outbound-port'), '-j', 'RETURN');
  }
  for (const c of o.subnetsToIgnore) {
    if (c.family === family)
      add(CHAINS.output, '-d', formatCidr(c), ...comment('ignore-subnet'), '-j', 'RETURN');
  }
  add(CHAINS.output, '-p', 'tcp', ...comment('outbound'), '-j', CHAINS.outboundRedirect);
  return rules;
}

/** The jump rules from the built-in chains into ours. */
export function buildJumpRules(): string[][] {
  return JUMPS.map(([builtin, target]) => ['-A', builtin, ...comment('hook'), '-j', target]);
}

/** The rules of the nat table in `iptables-save` output (the lines starting with -A). */
function natRuleLines(save: string): string[] {
  const lines = save.split('\n').map((l) => l.trim());
  const start = lines.indexOf('*nat');
  if (start < 0) return [];
  const rules: string[] = [];
  for (const line of lines.slice(start + 1)) {
    if (line === 'COMMIT' || line.startsWith('*')) break;
    if (line.startsWith('-A ')) rules.push(line);
  }
  return rules;
}

function natChains(save: string): Set<string> {
  return new Set([...save.matchAll(/^:(\S+)/gm)].map((m) => m[1]!));
}

/** A jump into one of our chains from a built-in one, e.g. "-A OUTPUT ... -j TRELLIS_OUTPUT". */
function isOurJump(line: string): boolean {
  return JUMPS.some(
    ([builtin, target]) => line.startsWith(`-A ${builtin} `) && line.endsWith(`-j ${target}`),
  );
}

function quoteArg(arg: string): string {
  return /^[\w./:,=+@-]+$/.test(arg) ? arg : `"${arg.replace(/["\\]/g, '\\$&')}"`;
}

/** iptables-restore input for the nat table. */
export function renderRestore(header: readonly string[], rules: readonly (readonly string[])[]): string {
  return ['*nat', ...header, ...rules.map((r) => r.map(quoteArg).join(' ')), 'COMMIT', ''].join('\n');
}

/**
 * The iptables-restore --noflush input that installs (or updates) the rules, given the current
 * `iptables-save -t nat` output: our chains are declared (hence flushed) and rebuilt, and jumps
 * are added only where missing, so applying twice leaves the same table.
 */
export function planInstall(o: InterceptionOptions, family: IpFamily, currentSave: string): string {
  const present = natRuleLines(currentSave).filter(isOurJump);
  const jumps = buildJumpRules().filter(([, builtin, ...rest]) => {
    const target = rest[rest.length - 1]!;
    return !present.some((line) => line.startsWith(`-A ${builtin} `) && line.endsWith(`-j ${target}`));
  });
  const header = OWN_CHAINS.map((c) => `:${c} - [0:0]`);
  return renderRestore(header, [...buildChainRules(o, family), ...jumps]);
}

/** The iptables-restore --noflush input that takes our rules away, or null if there are none. */
export function planRemove(currentSave: string): string | null {
  const chains = natChains(currentSave);
  const ours = OWN_CHAINS.filter((c) => chains.has(c));
  const jumps = natRuleLines(currentSave).filter(isOurJump);
  if (ours.length === 0 && jumps.length === 0) return null;
  // Declaring a chain flushes it, so nothing references another of ours when it is deleted.
  const header = ours.map((c) => `:${c} - [0:0]`);
  const deletes = jumps.map((line) => `-D ${line.slice(3)}`);
  const drops = ours.map((c) => `-X ${c}`);
  return ['*nat', ...header, ...deletes, ...drops, 'COMMIT', ''].join('\n');
}

/** iptables-save output without the lines that change on every call (comments, counters). */
export function normalizeSave(save: string): string {
  return save
    .split('\n')
    .filter((l) => !l.startsWith('#'))
    .map((l) => l.replace(/ \[\d+:\d+\]$/, ' [0:0]'))
    .join('\n');
}
