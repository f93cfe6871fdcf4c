// Network namespaces for tests: a fresh, empty namespace per "pod", named with the pid so parallel
// runs never collide, always deleted (with every process started in it) when the test ends.
// Tests that need one call netnsSkipReason() first and skip with its answer when not root.
import { spawn, spawnSync, type ChildProcess, type SpawnOptions } from 'node:child_process';
import type { TestContext } from 'node:test';

export interface ExecResult {
  readonly status: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

export interface Netns {
  readonly name: string;
  /** Runs a command inside the namespace and waits for it (bounded by a 30 s timeout). */
  exec(argv: readonly string[], input?: string): ExecResult;
  /** Like exec, but throws with the command's stderr when it does not exit 0. */
  run(argv: readonly string[], input?: string): string;
  /** Starts a long-running command in the namespace; it is killed when the namespace goes. */
  spawn(argv: readonly string[], options?: SpawnOptions): ChildProcess;
}

function commandExists(command: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${command}`], { stdio: 'ignore' }).status === 0;
}

/** Why namespace tests cannot run here (null: they can). `tools` are extra commands needed. */
export function netnsSkipReason(tools: readonly string[] = ['iptables']): string | null {
  if (process.platform !== 'linux') return 'network namespaces need Linux';
  if (process.getuid?.() !== 0) return 'needs root (network namespaces, iptables)';
  for (const tool of ['ip', ...tools]) {
    if (!commandExists(tool)) return `needs the '${tool}' command`;
  }
  return null;
}

let counter = 0;

/** A short unique namespace name: trellis-<tag>-<pid>-<n>. */
export function uniqueNetnsName(tag: string): string {
  counter += 1;
  return `trellis-${tag}-${process.pid}-${counter}`;
}

function execIn(name: string, argv: readonly string[], input?: string): ExecResult {
  const r = spawnSync('ip', ['netns', 'exec', name, ...argv], { input, encoding: 'utf8', timeout: 30_000 });
  return { status: r.status, stdout: r.stdout ?? '', stderr: r.stderr ?? (r.error ? String(r.error) : '') };
}

function mustRun(command: string, args: readonly string[]): void {
  const r = spawnSync(command, args, { encoding: 'utf8', timeout: 30_000 });
  if (r.status !== 0) throw new Error(`${command} ${args.join(' ')}: ${r.stderr || r.error}`);
}

/** Creates a namespace with loopback up; t.after kills its processes and deletes it. */
export function createNetns(t: TestContext, tag: string): Netns {
  const name = uniqueNetnsName(tag);
  mustRun('ip', ['netns', 'add', name]);
  const children: ChildProcess[] = [];
  t.after(async () => {
    await Promise.all(children.map((child) => stopChild(child)));
    spawnSync('ip', ['netns', 'delete', name], { timeout: 30_000 });
  });
  const ns: Netns = {
    name,
    exec: (argv, input) => execIn(name, argv, input),
    run(argv, input) {
      const r = execIn(name, argv, input);
      if (r.status !== 0) throw new Error(`in ${name}: ${argv.join(' ')} exited ${r.status}: ${r.stderr}`);
      return r.stdout;
    },
    spawn(argv, options = {}) {
      // `ip netns exec` execs the command, so the child's pid is the command's own pid.
      const child = spawn('ip', ['netns', 'exec', name, ...argv], { stdio: 'pipe', ...options });
      children.push(child);
      return child;
    },
  };
  ns.run(['ip', 'link', 'set', 'lo', 'up']);
  return ns;
}

/** SIGTERM, then SIGKILL after 3 s; resolves when the process has exited. */
export function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), 3000);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve();
    });
    child.kill('SIGTERM');
  });
}

/**
 * Connects two namespaces with a veth pair (named `eth0` in both) and gives each side an
 * address, e.g. link(a, '198.18.0.1/30', b, '198.18.0.2/30').
 */
export function linkNetns(a: Netns, addressA: string, b: Netns, addressB: string): void {
  mustRun('ip', [
    'link',
    'add',
    'eth0',
    'netns',
    a.name,
    'type',
    'veth',
    'peer',
    'name',
    'eth0',
    'netns',
    b.name,
  ]);
  for (const [ns, address] of [
    [a, addressA],
    [b, addressB],
  ] as const) {
    ns.run(['ip', 'addr', 'add', address, 'dev', 'eth0']);
    ns.run(['ip', 'link', 'set', 'eth0', 'up']);
  }
}
