// Isolation: as root on Linux the campaign runs itself again inside a new, empty network
// namespace (`unshare --net`, loopback brought up with `ip`), where the only listeners are its own
// and nothing leaves the machine; whatever a fuzzed proxy is tricked into connecting to, it can
// only be the campaign's. Otherwise the guard (guard.ts) keeps requests to the campaign's ports.
import { spawn, spawnSync } from 'node:child_process';
import { DIE_WITH_PARENT } from './die-with-parent.ts';

function has(command: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${command}`], { stdio: 'ignore' }).status === 0;
}

/** Why the campaign cannot isolate itself here, or null when it can. */
export function netnsUnavailable(): string | null {
  if (process.platform !== 'linux') return 'network namespaces need Linux';
  if (process.getuid?.() !== 0) return 'not root';
  for (const tool of ['unshare', 'ip']) if (!has(tool)) return `no '${tool}' command`;
  return null;
}

/** Runs this script again in a new network namespace with `extraArgs`; resolves with its exit code. */
export function rerunInNetns(extraArgs: readonly string[]): Promise<number> {
  const [node, script, ...args] = process.argv as [string, string, ...string[]];
  const [cmd, ...rest] = [
    ...DIE_WITH_PARENT,
    'unshare',
    ...['--net', '--', 'sh', '-c', 'ip link set lo up && exec "$@"', 'sh'],
    ...[node, ...process.execArgv, script, ...args, ...extraArgs],
  ] as [string, ...string[]];
  const child = spawn(cmd, rest, { stdio: 'inherit' });
  const forward = (signal: NodeJS.Signals) => () => child.kill(signal);
  process.on('SIGINT', forward('SIGINT'));
  process.on('SIGTERM', forward('SIGTERM'));
  return new Promise((resolve) => {
    child.once('exit', (code, signal) => resolve(code ?? (signal !== null ? 130 : 1)));
    child.once('error', () => resolve(2));
  });
}
