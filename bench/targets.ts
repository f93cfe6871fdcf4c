// Starting the things the benchmark measures: the upstream nginx, and each proxy in front of it
// (haproxy, nginx, trellis, the raw Node TCP pipe). Each returns a Target: where to send load and
// which process to measure. Configs come from the templates beside this file.
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort, startPinned, stop, waitForLine, waitForPort, type Started } from './processes.ts';

export const BENCH_DIR = dirname(fileURLToPath(import.meta.url));
export const REPO_ROOT = dirname(BENCH_DIR);

export interface Tools {
  readonly wrk: string;
  readonly haproxy: string;
  readonly nginx: string;
  readonly taskset: string;
  /** The Node that runs trellis and the Node helpers (node_modules/.bin/node when present). */
  readonly node: string;
  /**
   * A compiled trellis entry point (…/dist/cli/main.js) to run instead of bin/trellis
   * (BENCH_TRELLIS_MAIN): to measure a build made elsewhere, e.g. of a clean checkout.
   */
  readonly trellisMain?: string | undefined;
}

export interface Target {
  readonly name: string;
  readonly host: string;
  readonly port: number;
  /** The process whose CPU and memory are charged to this target (none for direct). */
  readonly process: Started | undefined;
  close(): Promise<void>;
}

export const READY_TIMEOUT_MS = 20_000;
const tempDirs = new Set<string>();

/** A temporary folder for configs and logs, removed at the end of the run. */
export function tempDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), `trellis-bench-${prefix}-`));
  tempDirs.add(dir);
  return dir;
}

/** Removes every temporary directory made for configs and logs. */
export function removeTempDirs(): void {
  for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
  tempDirs.clear();
}

/** A template of bench/ (path relative to it) with every {{PLACEHOLDER}} filled in. */
export function fillTemplate(file: string, values: Record<string, string | number>): string {
  let text = readFileSync(join(BENCH_DIR, file), 'utf8');
  for (const [key, value] of Object.entries(values)) text = text.replaceAll(`{{${key}}}`, String(value));
  const left = /\{\{([A-Z_]+)\}\}/.exec(text);
  if (left) throw new Error(`${file}: no value for placeholder {{${left[1]}}}`);
  return text;
}

/** A Target on 127.0.0.1:port; close() stops `p` and removes `dir`. */
export function target(name: string, port: number, p: Started | undefined, dir?: string): Target {
  return {
    name,
    host: '127.0.0.1',
    port,
    process: p,
    async close(): Promise<void> {
      if (p) await stop(p);
      if (dir) {
        rmSync(dir, { recursive: true, force: true });
        tempDirs.delete(dir);
      }
    },
  };
}

/** nginx from `template` (bench/, relative) with `values` and its own DIR and PORT filled in. */
export async function startNginxWith(
  tools: Tools,
  name: string,
  template: string,
  cpu: number | undefined,
  values: Record<string, number>,
): Promise<Target> {
  const dir = tempDir(name);
  const port = await freePort();
  const conf = join(dir, 'nginx.conf');
  writeFileSync(conf, fillTemplate(template, { ...values, DIR: dir, PORT: port }));
  const p = startPinned(name, cpu, [tools.nginx, '-e', 'stderr', '-p', dir, '-c', conf]);
  const t = target(name, port, p, dir);
  try {
    await waitForPort(p, port, READY_TIMEOUT_MS);
  } catch (err) {
    await t.close();
    throw err;
  }
  return t;
}

/** The upstream every scenario ends at: nginx answering 200 "ok". */
export function startUpstream(tools: Tools, cpu: number | undefined): Promise<Target> {
  return startNginxWith(tools, 'upstream', 'upstream-nginx.conf', cpu, {});
}

export function startNginxProxy(
  tools: Tools,
  cpu: number | undefined,
  upstreamPort: number,
): Promise<Target> {
  return startNginxWith(tools, 'nginx', 'nginx.conf', cpu, { UPSTREAM_PORT: upstreamPort });
}

/** haproxy in `mode http` (keep-alive, connection reuse) or `mode tcp` (plain relay). */
export function startHaproxy(
  tools: Tools,
  cpu: number | undefined,
  upstreamPort: number,
  mode: 'http' | 'tcp',
): Promise<Target> {
  return startHaproxyWith(tools, mode === 'http' ? 'haproxy' : 'haproxy-tcp', 'haproxy.cfg', cpu, {
    MODE: mode,
    UPSTREAM_PORT: upstreamPort,
    HTTP_ONLY: mode === 'http' ? '' : '# ',
  });
}

/** haproxy from `template` (bench/, relative) with `values` and its own PORT filled in. */
export async function startHaproxyWith(
  tools: Tools,
  name: string,
  template: string,
  cpu: number | undefined,
  values: Record<string, string | number>,
): Promise<Target> {
  const dir = tempDir(name);
  const port = await freePort();
  const cfg = join(dir, 'haproxy.cfg');
  writeFileSync(cfg, fillTemplate(template, { ...values, PORT: port }));
  const p = startPinned(name, cpu, [tools.haproxy, '-db', '-f', cfg]);
  const t = target(name, port, p, dir);
  try {
    await waitForPort(p, port, READY_TIMEOUT_MS);
  } catch (err) {
    await t.close();
    throw err;
  }
  return t;
}

/** The raw Node TCP relay (bench/tcp-pipe.ts): the floor for opaque TCP in Node. */
export async function startTcpPipe(
  tools: Tools,
  cpu: number | undefined,
  upstreamPort: number,
): Promise<Target> {
  const script = join(BENCH_DIR, 'tcp-pipe.ts');
  const p = startPinned('tcp-pipe', cpu, [tools.node, script, '--target', `127.0.0.1:${upstreamPort}`]);
  try {
    const listen = await waitForLine(p, (line) => readyField(line, 'listen'), READY_TIMEOUT_MS);
    return target('tcp-pipe', portOf(listen), p);
  } catch (err) {
    await stop(p);
    throw err;
  }
}

/**
 * trellis proxy. 'inbound': the inbound listener forwarding to the upstream as the app (HTTP,
 * one hop). 'opaque': a destination listener with `protocol: opaque` to the upstream.
 */
export async function startTrellis(
  tools: Tools,
  cpu: number | undefined,
  upstreamPort: number,
  kind: 'inbound' | 'opaque',
): Promise<Target> {
  const name = kind === 'inbound' ? 'trellis' : 'trellis-opaque';
  const argv = [
    ...trellisCommand(tools),
    'proxy',
    '--outbound-listen',
    '127.0.0.1:0',
    '--inbound-listen',
    '127.0.0.1:0',
    '--admin-listen',
    '127.0.0.1:0',
    '--app-port',
    String(upstreamPort),
  ];
  let dir: string | undefined;
  let opaquePort = 0;
  if (kind === 'opaque') {
    dir = tempDir(name);
    opaquePort = await freePort();
    const config = join(dir, 'trellis.yaml');
    writeFileSync(
      config,
      [
        'destinations:',
        `  - listen: "127.0.0.1:${opaquePort}"`,
        `    target: "127.0.0.1:${upstreamPort}"`,
        '    protocol: opaque',
        '',
      ].join('\n'),
    );
    argv.push('--config', config);
  }
  const p = startPinned(name, cpu, argv);
  const t0 = target(name, 0, p, dir);
  try {
    const inbound = await waitForLine(p, (line) => readyField(line, 'inbound'), READY_TIMEOUT_MS);
    const port = kind === 'inbound' ? portOf(inbound) : opaquePort;
    await waitForPort(p, port, READY_TIMEOUT_MS);
    return { ...t0, port };
  } catch (err) {
    await t0.close();
    throw err;
  }
}

/** Reads `field` from a {"event":"ready",...} JSON line, or undefined for any other line. */
export function readyField(line: string, field: string): string | undefined {
  if (!line.startsWith('{')) return undefined;
  try {
    const msg = JSON.parse(line) as Record<string, unknown>;
    const v = msg[field];
    return msg['event'] === 'ready' && typeof v === 'string' ? v : undefined;
  } catch {
    return undefined;
  }
}

export function portOf(hostPort: string): number {
  const port = Number(hostPort.slice(hostPort.lastIndexOf(':') + 1));
  if (!Number.isInteger(port) || port <= 0) throw new Error(`not HOST:PORT: ${hostPort}`);
  return port;
}

/** The Node flags bin/trellis runs trellis with (see there for why). */
export const TRELLIS_NODE_FLAGS: readonly string[] = [
  '--max-semi-space-size=2',
  '--single-threaded-gc',
  '--heap-growing-percent=50',
];

/**
 * How trellis is started: a compiled main.js given with BENCH_TRELLIS_MAIN, else bin/trellis, the
 * launcher users run (compiled dist/ when built, with its Node flags), else the TypeScript entry
 * point with the repository's Node.
 */
export function trellisCommand(tools: Tools): string[] {
  // The same Node flags and malloc settings as bin/trellis gives a proxy, so that a build run this
  // way is measured like the launcher (env execs node: the pid is node's).
  if (tools.trellisMain)
    return [
      'env',
      'MALLOC_ARENA_MAX=1',
      'MALLOC_TRIM_THRESHOLD_=65536',
      tools.node,
      ...TRELLIS_NODE_FLAGS,
      tools.trellisMain,
    ];
  const launcher = join(REPO_ROOT, 'bin/trellis');
  return existsSync(launcher) ? [launcher] : [tools.node, join(REPO_ROOT, 'src/cli/main.ts')];
}

/** The Node to run trellis with: the repository's Node 24 when installed, else this one. */
export function repoNode(): string {
  const local = join(REPO_ROOT, 'node_modules/.bin/node');
  return existsSync(local) ? local : process.execPath;
}
