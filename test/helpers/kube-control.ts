// For end-to-end tests of `trellis control` over the fake Kubernetes API (test/fake-kube): the
// real `kubectl apply` against it, the control plane started as a real process reading it, and a
// proxy's route watch (src/proxy/route/watch-client.ts) of one Service port of namespace shop,
// whose latest table the test reads.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { silentLogger } from '../../src/core/log.ts';
import type { PolicedRouteTable } from '../../src/proxy/route/route-table.ts';
import { watchRoutes } from '../../src/proxy/route/watch-client.ts';
import { startCli, waitFor, type Running } from './cli.ts';

/** `kubectl apply -f -` of `yaml` against `server` (no schema validation: the fake has no OpenAPI); fails the test on an error. */
export function kubectlApply(server: string, yaml: string): Promise<void> {
  return kubectl(server, 'apply', yaml);
}

/** `kubectl apply` or `delete` `-f -` of `yaml` against `server`; fails the test on an error. */
export async function kubectl(server: string, verb: 'apply' | 'delete', yaml: string): Promise<void> {
  const args = ['--server', server, verb, '-f', '-', ...(verb === 'apply' ? ['--validate=false'] : [])];
  const proc = spawn('kubectl', args, { stdio: ['pipe', 'pipe', 'pipe'] });
  let output = '';
  proc.stdout.on('data', (d: Buffer) => (output += d.toString()));
  proc.stderr.on('data', (d: Buffer) => (output += d.toString()));
  proc.stdin.end(yaml);
  const timer = setTimeout(() => proc.kill('SIGKILL'), 30_000);
  const [code] = (await once(proc, 'exit')) as [number | null];
  clearTimeout(timer);
  assert.equal(code, 0, output);
}

/** `trellis control --kubeconfig-server URL` on free ports (and `args`); its ready line (grpc, http addresses). */
export async function startKubeControl(
  t: { after(fn: () => Promise<unknown>): void },
  kubeUrl: string,
  args: readonly string[] = [],
): Promise<{ control: Running; ready: Record<string, string> }> {
  const control = startCli(t, [
    'control',
    '--kubeconfig-server',
    kubeUrl,
    '--grpc-listen',
    '127.0.0.1:0',
    '--http-listen',
    '127.0.0.1:0',
    '--log-level',
    'warn',
    ...args,
  ]);
  const ready = await waitFor('the ready line', async () => {
    const line = control.stdout().split('\n')[0];
    return line === undefined || line === '' || !control.stdout().includes('\n')
      ? null
      : (JSON.parse(line) as Record<string, string>);
  });
  return { control, ready };
}

/** A proxy's route watch of shop/SERVICE:PORT for a client of namespace shop; `table()` is the latest. */
export function watchShopRoutes(
  t: { after(fn: () => unknown): void },
  grpc: string,
  service: string,
  port: number,
): { table(): PolicedRouteTable | null } {
  let table: PolicedRouteTable | null = null;
  const watch = watchRoutes({
    address: grpc,
    clientNamespace: 'shop',
    namespace: 'shop',
    service,
    port,
    backoff: { initialMs: 50, maxMs: 200 },
    log: silentLogger,
    onTable: (next) => (table = next),
  });
  t.after(() => watch.close());
  return { table: () => table };
}
