// Starts the real `trellis proxy` process for end-to-end tests, on loopback with port 0
// everywhere, and waits for its ready line. Every test that uses it must call stop() (t.after).
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const NODE = process.execPath;
/**
 * The `trellis` entry point the tests run: the build, dist/cli/main.js, when it is newer than every
 * file under src/ (as right after `npm run build`, which `npm test` runs first), else the sources,
 * src/cli/main.ts. Both are the code of this checkout; the build starts a process in about a third
 * of the CPU time (no type stripping: ~0.3 s against ~0.75 s per proxy), and the end-to-end tests
 * start hundreds. A source edited since the build makes it stale, and the sources run.
 */
export const CLI = freshBuild() ?? path.join(REPO, 'src/cli/main.ts');

function freshBuild(): string | undefined {
  const main = path.join(REPO, 'dist/cli/main.js');
  let built: number;
  try {
    built = statSync(main).mtimeMs;
  } catch {
    return undefined;
  }
  const newer = (dir: string): boolean =>
    readdirSync(dir, { withFileTypes: true }).some((entry) => {
      const file = path.join(dir, entry.name);
      return entry.isDirectory() ? newer(file) : statSync(file).mtimeMs >= built;
    });
  return newer(path.join(REPO, 'src')) ? undefined : main;
}
/** `trellis proxy` flags that put its three listeners on loopback, port 0. */
export const LOOPBACK_LISTENERS: readonly string[] = [
  '--inbound-listen',
  '127.0.0.1:0',
  '--outbound-listen',
  '127.0.0.1:0',
  '--admin-listen',
  '127.0.0.1:0',
];

export interface ProxyProcess {
  readonly proc: ChildProcess;
  /** Bound addresses by listener name: inbound, outbound, admin, destination-N. */
  readonly addresses: Record<string, string>;
  /** Port of a listener. */
  port(name: string): number;
  /** GET on the admin listener; returns the body. */
  admin(pathname: string): Promise<string>;
  /** A metric's value from /metrics (sum of the series whose labels include every given one). */
  metric(name: string, labels?: Record<string, string>): Promise<number>;
  /** Everything the process wrote to stderr so far. */
  stderr(): string;
  /** SIGTERM, then SIGKILL after a while; resolves with the exit code. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

export interface StartOptions {
  /** Extra flags after the default listener flags. */
  args?: string[];
  /** YAML text written to a temporary file and passed as --config. */
  configYaml?: string;
  env?: NodeJS.ProcessEnv;
}

export async function startProxyProcess(opts: StartOptions = {}): Promise<ProxyProcess> {
  const args = [CLI, 'proxy', ...LOOPBACK_LISTENERS, '--log-level', 'warn'];
  if (opts.configYaml !== undefined) {
    const dir = mkdtempSync(path.join(tmpdir(), 'trellis-test-'));
    const file = path.join(dir, 'proxy.yaml');
    writeFileSync(file, opts.configYaml);
    args.push('--config', file);
  }
  args.push(...(opts.args ?? []));
  const proc = spawn(NODE, args, {
    cwd: REPO,
    env: opts.env ?? process.env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let err = '';
  proc.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  let out = '';
  const addresses = await new Promise<Record<string, string>>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`proxy did not start in time: ${err}`)), 15_000);
    proc.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const nl = out.indexOf('\n');
      if (nl !== -1) {
        clearTimeout(timer);
        try {
          const line = JSON.parse(out.slice(0, nl)) as Record<string, string>;
          resolve(line);
        } catch (e) {
          reject(e as Error);
        }
      }
    });
    proc.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`proxy exited with ${code}: ${err}`));
    });
  });
  const port = (name: string) => {
    const a = addresses[name];
    if (a === undefined) throw new Error(`no listener ${name}`);
    return Number(a.slice(a.lastIndexOf(':') + 1));
  };
  const admin = async (pathname: string) => {
    const res = await fetch(`http://127.0.0.1:${port('admin')}${pathname}`);
    return res.text();
  };
  return {
    proc,
    addresses,
    port,
    admin,
    async metric(name, labels = {}) {
      const text = await admin('/metrics');
      let sum = 0;
      for (const line of text.split('\n')) {
        if (!line.startsWith(name + '{') && !line.startsWith(name + ' ')) continue;
        const ok = Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`));
        if (ok) sum += Number(line.slice(line.lastIndexOf(' ') + 1));
      }
      return sum;
    },
    stderr: () => err,
    async stop(signal = 'SIGTERM') {
      if (proc.exitCode !== null || proc.signalCode !== null) return proc.exitCode;
      proc.kill(signal);
      const timer = setTimeout(() => proc.kill('SIGKILL'), 10_000);
      const [code] = (await once(proc, 'exit')) as [number | null];
      clearTimeout(timer);
      return code;
    },
  };
}
