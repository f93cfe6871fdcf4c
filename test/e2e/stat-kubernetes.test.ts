// `trellis stat` against a control plane in Kubernetes mode: `trellis control` (a real process)
// over the fake API server (test/fake-kube), and a real proxy (in-process) whose pod object names
// its admin listener as the proxy container's `trellis-admin` port, at the pod IP (127.0.0.1
// here). The control plane finds the ready meshed pods in its watch and scrapes them there
// (kubernetesScrapeTargets): the pod's requests show up in `trellis stat` under its Deployment's
// name, as they do on one machine. A pod that is not ready, or not meshed, is not listed.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { FakeKubeServer, type KubeObject } from '../fake-kube/server.ts';
import { runCli, waitFor } from '../helpers/cli.ts';
import { startKubeControl } from '../helpers/kube-control.ts';
import { portOf } from '../helpers/running-proxy.ts';
import { validateProxyConfig } from '../../src/proxy/config.ts';
import { startProxy } from '../../src/proxy/proxy.ts';
import { silentLogger } from '../../src/core/log.ts';

/** A running pod of namespace shop, owned by ReplicaSet `${app}-7d9f` of Deployment `app`. */
function pod(
  name: string,
  app: string,
  adminPort: number,
  opts: { ready: boolean; injected: boolean },
): KubeObject {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: {
      name,
      namespace: 'shop',
      labels: { app, 'pod-template-hash': '7d9f' },
      annotations: opts.injected ? { 'trellis.dev/proxy-injected': 'true' } : {},
      ownerReferences: [
        {
          apiVersion: 'apps/v1',
          kind: 'ReplicaSet',
          name: `${app}-7d9f`,
          uid: `rs-${app}`,
          controller: true,
        },
      ],
    },
    spec: {
      serviceAccountName: app,
      initContainers: opts.injected
        ? [
            {
              name: 'trellis-proxy',
              image: 'localhost/trellis:test',
              restartPolicy: 'Always',
              ports: [{ name: 'trellis-admin', containerPort: adminPort }],
            },
          ]
        : [],
      containers: [{ name: 'app', image: `${app}:1`, ports: [{ containerPort: 8080 }] }],
    },
    status: {
      phase: 'Running',
      podIP: '127.0.0.1',
      conditions: [{ type: 'Ready', status: opts.ready ? 'True' : 'False' }],
    },
  } as unknown as KubeObject;
}

test("trellis stat on Kubernetes: the control plane scrapes the meshed pods' proxies at their pod IP", async (t) => {
  const kube = new FakeKubeServer();
  await kube.start();
  t.after(() => kube.close());
  const { ready } = await startKubeControl(t, kube.url);
  const api = `http://${ready['http']}`;

  const app = createServer((req, res) => res.end(`hello ${req.url}\n`));
  app.listen(0, '127.0.0.1');
  await once(app, 'listening');
  t.after(() => app.close());
  const proxy = await startProxy(
    validateProxyConfig({
      inboundListen: '127.0.0.1:0',
      outboundListen: '127.0.0.1:0',
      adminListen: '127.0.0.1:0',
      appPort: (app.address() as AddressInfo).port,
      workload: { name: 'web-7d9f-abcde', namespace: 'shop' },
      log: { level: 'off' },
    }),
    silentLogger,
    undefined,
    { authorizer: null },
  );
  t.after(() => proxy.shutdown(0));
  const adminPort = portOf(proxy, 'admin');
  kube.apply(pod('web-7d9f-abcde', 'web', adminPort, { ready: true, injected: true }));
  // The same proxy behind a pod that is not ready, and one that is not meshed: neither is scraped.
  kube.apply(pod('cart-7d9f-abcde', 'cart', adminPort, { ready: false, injected: true }));
  kube.apply(pod('plain-7d9f-abcde', 'plain', adminPort, { ready: true, injected: false }));

  const inbound = `http://127.0.0.1:${portOf(proxy, 'inbound')}`;
  const stats = await waitFor(
    'the requests in trellis stat',
    async () => {
      for (let i = 0; i < 5; i++) await (await fetch(`${inbound}/item/${i}`)).text();
      const r = await runCli(['stat', '-n', 'shop', '--control', api, '-o', 'json']);
      assert.equal(r.code, 0, r.stderr);
      const rows = JSON.parse(r.stdout) as { name: string; rps: number | null; success: number | null }[];
      const web = rows.find((s) => s.name === 'web');
      return web !== undefined && web.rps !== null && web.rps > 0 ? rows : null;
    },
    30_000,
  );
  const web = stats.find((s) => s.name === 'web')!;
  assert.equal(web.success, 1);
  assert.deepEqual(
    stats.map((s) => s.name),
    ['web'],
    'only the ready meshed pod is a scrape target',
  );
});
