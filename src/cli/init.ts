// `trellis init`: writes the iptables rules that send a workload's TCP traffic through its proxy
// (transparent mode) in the current network namespace, like Linkerd's proxy-init. On Kubernetes it
// runs in an init container with NET_ADMIN; on one machine, inside `ip netns exec`. The rules
// themselves are built by src/proxy/transport/iptables.ts; this file parses flags and applies them
// with iptables-save / iptables-restore --noflush (one atomic transaction per IP family).
import { spawnSync } from 'node:child_process';
import { parseArgs } from 'node:util';
import { ConfigError } from '../core/errors.ts';
import {
  parseCidrList,
  parseId,
  parsePort,
  parsePortList,
  planInstall,
  planRemove,
  type InterceptionOptions,
  type IpFamily,
} from '../proxy/transport/iptables.ts';
import { SUMMARIES } from './summaries.ts';

export const summary = SUMMARIES.init;

const HELP = `Usage: trellis init [options]

Writes iptables rules (nat table) in the current network namespace so that TCP arriving for the
workload goes to the proxy's inbound port and TCP the workload sends goes to its outbound port.
Running it again with the same flags changes nothing; with other flags it replaces the rules.

Options:
  --inbound-port PORT              proxy inbound port (default 4143)
  --outbound-port PORT             proxy outbound port (default 4140)
  --admin-port PORT                proxy admin port, never redirected inbound (default 4191)
  --proxy-uid UID                  uid the proxy runs as; its traffic is not redirected
  --proxy-gid GID                  gid the proxy runs as (one of --proxy-uid/--proxy-gid is required)
  --inbound-ports-to-ignore LIST   ports reaching the workload directly, e.g. 22,9000-9100
  --outbound-ports-to-ignore LIST  destination ports the workload reaches directly, e.g. 25,3306
  --subnets-to-ignore LIST         destination CIDRs reached directly, e.g. 10.96.0.0/12,fd00::/8
  --ipv6                           also write the rules with ip6tables (the proxy must then listen
                                   on [::1] for outbound and [::] for inbound)
  --dry-run                        print the iptables-restore input that would be applied; change nothing
  --remove                         take the rules away
  -h, --help                       show this help
`;

const OPTIONS = {
  'inbound-port': { type: 'string' },
  'outbound-port': { type: 'string' },
  'admin-port': { type: 'string' },
  'proxy-uid': { type: 'string' },
  'proxy-gid': { type: 'string' },
  'inbound-ports-to-ignore': { type: 'string' },
  'outbound-ports-to-ignore': { type: 'string' },
  'subnets-to-ignore': { type: 'string' },
  ipv6: { type: 'boolean' },
  'dry-run': { type: 'boolean' },
  remove: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const;

interface InitRequest {
  readonly options: InterceptionOptions;
  readonly families: readonly IpFamily[];
  readonly dryRun: boolean;
  readonly remove: boolean;
  readonly help: boolean;
}

function parseFlags(argv: string[]) {
  try {
    return parseArgs({ args: argv, options: OPTIONS, strict: true, allowPositionals: false }).values;
  } catch (err) {
    // e.g. "Unknown option '--foo'" or "Option '--proxy-uid <value>' argument missing"
    throw new ConfigError('', (err as Error).message);
  }
}

/** Parses and validates the flags; throws ConfigError naming the wrong flag. */
export function parseInitArgs(argv: string[]): InitRequest {
  const values = parseFlags(argv);
  const port = (flag: 'inbound-port' | 'outbound-port' | 'admin-port', fallback: number) => {
    const v = values[flag];
    return v === undefined ? fallback : parsePort(v, `--${flag}`);
  };
  const id = (flag: 'proxy-uid' | 'proxy-gid') => {
    const v = values[flag];
    return v === undefined ? undefined : parseId(v, `--${flag}`);
  };
  const options: InterceptionOptions = {
    inboundPort: port('inbound-port', 4143),
    outboundPort: port('outbound-port', 4140),
    adminPort: port('admin-port', 4191),
    proxyUid: id('proxy-uid'),
    proxyGid: id('proxy-gid'),
    inboundPortsToIgnore: parsePortList(values['inbound-ports-to-ignore'] ?? '', '--inbound-ports-to-ignore'),
    outboundPortsToIgnore: parsePortList(
      values['outbound-ports-to-ignore'] ?? '',
      '--outbound-ports-to-ignore',
    ),
    subnetsToIgnore: parseCidrList(values['subnets-to-ignore'] ?? '', '--subnets-to-ignore'),
  };
  const remove = values.remove === true;
  const help = values.help === true;
  if (options.inboundPort === options.outboundPort) {
    throw new ConfigError('--outbound-port', `must differ from --inbound-port (${options.inboundPort})`);
  }
  if (!remove && !help && options.proxyUid === undefined && options.proxyGid === undefined) {
    throw new ConfigError(
      '--proxy-uid',
      'required (or --proxy-gid): without it the proxy’s own connections would be redirected back into it',
    );
  }
  const families: IpFamily[] = values.ipv6 === true ? [4, 6] : [4];
  return { options, families, dryRun: values['dry-run'] === true, remove, help };
}

interface Tool {
  readonly save: string;
  readonly restore: string;
}

function tools(family: IpFamily): Tool {
  return family === 4
    ? { save: 'iptables-save', restore: 'iptables-restore' }
    : { save: 'ip6tables-save', restore: 'ip6tables-restore' };
}

/** Runs a command; returns its stdout, or throws with its stderr. */
function exec(command: string, args: string[], input?: string): string {
  const result = spawnSync(command, args, { input, encoding: 'utf8', timeout: 30_000 });
  if (result.error) throw new Error(`${command}: ${result.error.message}`);
  if (result.status !== 0) {
    throw new Error(`${command} ${args.join(' ')} failed (exit ${result.status}): ${result.stderr.trim()}`);
  }
  return result.stdout;
}

function applyFamily(request: InitRequest, family: IpFamily): void {
  const tool = tools(family);
  let current = '';
  try {
    current = exec(tool.save, ['-t', 'nat']);
  } catch (err) {
    if (!request.dryRun) throw err;
    process.stdout.write(`# could not read the current rules (${(err as Error).message}); assuming none\n`);
  }
  const input = request.remove ? planRemove(current) : planInstall(request.options, family, current);
  if (input === null) {
    process.stdout.write(`# ${tool.restore}: no Trellis rules to remove\n`);
    return;
  }
  if (request.dryRun) {
    process.stdout.write(`# would run: ${tool.restore} --noflush <<EOF\n${input}EOF\n`);
    return;
  }
  exec(tool.restore, ['--noflush'], input);
}

export async function run(argv: string[]): Promise<number> {
  let request: InitRequest;
  try {
    request = parseInitArgs(argv);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    process.stderr.write(`trellis init: ${err.message}\nRun \`trellis init --help\` for the options.\n`);
    return 2;
  }
  if (request.help) {
    process.stdout.write(HELP);
    return 0;
  }
  for (const family of request.families) {
    try {
      applyFamily(request, family);
    } catch (err) {
      process.stderr.write(`trellis init: ${(err as Error).message}\n`);
      return 1;
    }
  }
  if (!request.dryRun) {
    process.stderr.write(`trellis init: ${request.remove ? 'removed' : 'applied'} the interception rules\n`);
  }
  return 0;
}
