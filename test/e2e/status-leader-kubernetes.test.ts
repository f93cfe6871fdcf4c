// Two `trellis control` replicas (real processes) over one fake Kubernetes API server: both serve
// the route, only the holder of the Lease trellis/trellis-control-status-writer
// (src/control/leader-lease.ts) patches route status, the other sends no status patch at all, and
// when the holder is stopped (SIGTERM) it releases the Lease, so that the other takes over at once
// (well before the Lease could expire) and writes the next change.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FakeKubeServer } from '../fake-kube/server.ts';
import { runCli, waitFor } from '../helpers/cli.ts';
import { startKubeControl } from '../helpers/kube-control.ts';

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

const service = (port: number) => `apiVersion: v1
kind: Service
metadata: { name: web, namespace: shop }
spec:
  ports: [{ name: http, port: ${port} }]
`;

const ROUTE = `apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: split, namespace: shop }
spec:
  parentRefs: [{ group: "", kind: Service, name: web, port: 80 }]
  rules: [{ backendRefs: [{ name: web, port: 80 }] }]
`;

/** A 5 s Lease: renewed every ~0.7 s, tried for every 0.7 to 1.5 s; taking over by expiry needs 5 s. */
const LEASE = ['--status-lease-duration', '5s'];

const statusPatches = (kube: FakeKubeServer) =>
  kube.requests.filter((r) => r.verb === 'patch' && r.subresource === 'status').length;

/** The Accepted condition's status of our entry of route split. */
const accepted = (kube: FakeKubeServer): string | undefined => {
  const parents = ((kube.get('HTTPRoute', 'shop', 'split') as Json | undefined)?.['status']?.['parents'] ??
    []) as Json[];
  const ours = parents.find((p) => p['controllerName'] === 'trellis.dev/mesh');
  return (ours?.['conditions'] as Json[] | undefined)?.find((c) => c['type'] === 'Accepted')?.['status'];
};

/** A control plane's trellis_control_status_leader and its status writes (any result). */
async function statusMetrics(http: string): Promise<{ leader: number; writes: number }> {
  const page = await (await fetch(`http://${http}/metrics`)).text();
  const leader = /^trellis_control_status_leader (\d)$/m.exec(page);
  assert.ok(leader, page);
  const writes = [...page.matchAll(/^trellis_route_status_writes_total\{result="\w+"\} (\d+)$/gm)];
  return { leader: Number(leader[1]), writes: writes.reduce((sum, m) => sum + Number(m[1]), 0) };
}

test('of two trellis control replicas only the Lease holder writes route status; after it stops the other takes over at once', async (t) => {
  const kube = new FakeKubeServer();
  await kube.start();
  t.after(() => kube.close());
  kube.applyYaml(service(80));
  kube.applyYaml(ROUTE);

  const first = await startKubeControl(t, kube.url, LEASE);
  await waitFor('the first to lead', async () =>
    (await statusMetrics(first.ready['http']!)).leader === 1 ? true : null,
  );
  await waitFor('Accepted=True', async () => (accepted(kube) === 'True' ? true : null));
  const second = await startKubeControl(t, kube.url, LEASE);
  // The second has synced its routes (the /metrics page lists its writer) and does not lead.
  assert.deepEqual(await statusMetrics(second.ready['http']!), { leader: 0, writes: 0 });
  const lease = kube.get('Lease', 'trellis', 'trellis-control-status-writer') as Json;
  assert.equal(lease['spec']['leaseDurationSeconds'], 5);
  const holder = lease['spec']['holderIdentity'] as string;
  assert.match(holder, /_[0-9a-f]{8}$/);

  // A change both see: only the holder patches (two writers would send two patches, one a 409).
  const before = statusPatches(kube);
  kube.applyYaml(service(81));
  await waitFor('Accepted=False', async () => (accepted(kube) === 'False' ? true : null));
  // Both replicas have seen the change (the second's snapshot serves it) and had a turn to write.
  await new Promise((resolve) => setTimeout(resolve, 500));
  assert.equal(statusPatches(kube), before + 1);
  assert.equal((await statusMetrics(second.ready['http']!)).writes, 0);

  // The holder stops: it releases the Lease and the other takes it on its next try, not after 5 s.
  const stoppedAt = Date.now();
  assert.equal(await first.control.stop(), 0, first.control.stderr());
  await waitFor('the second to lead', async () =>
    (await statusMetrics(second.ready['http']!)).leader === 1 ? true : null,
  );
  const waited = Date.now() - stoppedAt;
  t.diagnostic(`the second took over ${waited} ms after the SIGTERM`);
  assert.ok(waited < 4000, `took over ${waited} ms after the stop`);
  const taken = (kube.get('Lease', 'trellis', 'trellis-control-status-writer') as Json)['spec'];
  assert.notEqual(taken['holderIdentity'], holder);
  assert.equal(taken['leaseTransitions'], 1);

  // The next change is written by the second.
  kube.applyYaml(service(80));
  await waitFor('Accepted=True again', async () => (accepted(kube) === 'True' ? true : null));
  assert.equal((await statusMetrics(second.ready['http']!)).writes, 1);
  assert.equal(await second.control.stop(), 0, second.control.stderr());
});

test('trellis control refuses a status Lease duration that is not whole seconds, and a namespace that is not a name', async () => {
  for (const [flag, value] of [
    ['--status-lease-duration', '1500ms'],
    ['--status-lease-duration', '0s'],
    ['--status-lease-namespace', 'Not_A_Namespace'],
  ] as const) {
    const out = await runCli(['control', '--kubeconfig-server', 'http://127.0.0.1:9', flag, value]);
    assert.equal(out.code, 2, `${flag} ${value}: ${out.stderr}`);
    assert.match(out.stderr, new RegExp(flag));
  }
});
