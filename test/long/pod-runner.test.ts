// Two injected pods talk through their proxies as in a cluster: `trellis install` is applied to the
// fake API server, `trellis control` runs with the install's identity issuer, injector certificate
// and configuration (workload tokens checked by the fake server's TokenReview), two Pods created
// through the API server are injected by the webhook, and the pod runner (test/helpers/pod-runner.ts)
// runs them as the kubelet would, each in its own network namespace on a bridge (198.18.0.0/24):
// `trellis-init` writes the iptables rules, the proxy runs as uid 2102 with its projected token.
// The client pod has the proxy as a native sidecar (its startup probe must pass before the app
// starts); the server pod, annotated for a classic sidecar, has it beside the app, whose readiness
// probe (through the proxy) keeps it not ready in its EndpointSlice until both run. The client app
// sends plain HTTP to the server's Service name; its ClusterIP (198.19.0.20) is routed nowhere, so
// only interception gets it there. The server app sees the client identity its proxy set, so the
// hop was mutual TLS, and both proxies counted the request and the mTLS connection with the
// other's identity.
import assert from 'node:assert/strict';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { CoreV1Api, type V1Pod } from '@kubernetes/client-node';
import { parseAllDocuments } from 'yaml';
import { kubeConfigForServer } from '../../src/control/discovery/kubernetes.ts';
import { FakeKubeServer, type KubeObject } from '../fake-kube/server.ts';
import { serveServiceAccountTokens } from '../fake-kube/tokens.ts';
import { removeTempDir } from '../helpers/temp-dir.ts';
import { runCli } from '../helpers/cli.ts';
import { startInstalledInjector } from '../helpers/installed-injector.ts';
import { createPodNetwork } from '../helpers/pod-network.ts';
import { runPod } from '../helpers/pod-runner.ts';
import { NODE } from '../helpers/proxy-process.ts';
import { netnsSkipReason } from '../e2e/netns.ts';

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

const CONTROL_CLUSTER_IP = '198.19.0.1';
const WEB_CLUSTER_IP = '198.19.0.20';
const WEB_NAME = `web.shop.svc.cluster.local`;

const SERVER_APP = `
import http from 'node:http';
http.createServer((req, res) => {
  res.setHeader('content-type', 'application/json');
  res.end(JSON.stringify({ path: req.url, headers: req.headers }));
}).listen(8080, '0.0.0.0');
`;

const CLIENT_APP = `
import http from 'node:http';
setTimeout(() => { process.stderr.write('client timed out\\n'); process.exit(3); }, 15000).unref();
http.get({ host: '${WEB_NAME}', port: 80, path: '/hello', agent: false }, (res) => {
  let body = '';
  res.setEncoding('utf8').on('data', (d) => (body += d)).on('end', () => {
    process.stdout.write(JSON.stringify({ status: res.statusCode, body }));
  });
}).on('error', (e) => { process.stderr.write(String(e) + '\\n'); process.exit(2); });
`;

/** The sum of a counter's samples whose labels include every one of `labels`. */
function counter(metrics: string, name: string, labels: readonly string[]): number {
  let sum = 0;
  for (const m of metrics.matchAll(new RegExp(`^${name}\\{([^}]*)\\} (\\S+)$`, 'gm'))) {
    if (labels.every((l) => m[1]!.includes(l))) sum += Number(m[2]);
  }
  return sum;
}

test('two injected pods run by the pod runner talk through both proxies with mTLS', async (t) => {
  const skip = netnsSkipReason(['iptables', 'iptables-save', 'iptables-restore', 'setpriv']);
  if (skip) return t.skip(skip);
  const kube = new FakeKubeServer();
  await kube.start();
  t.after(() => kube.close());
  const tokens = serveServiceAccountTokens(kube);
  const install = await runCli(['install', '--image', 'localhost/trellis:test']);
  assert.equal(install.code, 0, install.stderr);
  kube.applyYaml(install.stdout);
  const objects = parseAllDocuments(install.stdout).map((d) => d.toJS() as Json);
  const find = (kind: string, name: string) =>
    objects.find((o) => o['kind'] === kind && o['metadata']['name'] === name)!;

  // The control plane as the installed Deployment runs it, with the install's anchor and issuer
  // (what its identity-files init container copies into --identity-dir).
  const identityDir = await mkdtemp(join(tmpdir(), 'trellis-identity-'));
  t.after(() => removeTempDir(identityDir));
  const issuer = find('Secret', 'trellis-identity-issuer')['stringData'];
  await writeFile(
    join(identityDir, 'trust-anchors.pem'),
    find('ConfigMap', 'trellis-identity-trust-anchors')['data']['trust-anchors.pem'],
  );
  await writeFile(join(identityDir, 'issuer.pem'), issuer['issuer.pem']);
  await writeFile(join(identityDir, 'issuer.key.pem'), issuer['issuer.key.pem'], { mode: 0o600 });
  const [control, network] = await Promise.all([
    startInstalledInjector(t, kube.url, objects, [`--identity-dir=${identityDir}`]),
    createPodNetwork(t),
  ]);
  kube.serviceAddress = () => control.address;
  // The control plane's Service: its ClusterIP on the node, forwarded to the process on loopback.
  const grpcPort = Number(control.grpc.slice(control.grpc.lastIndexOf(':') + 1));
  await network.expose(CONTROL_CLUSTER_IP, 8086, { host: '127.0.0.1', port: grpcPort });
  kube.write(
    'Service',
    'trellis',
    'trellis-control',
    { spec: { clusterIP: CONTROL_CLUSTER_IP } },
    {
      mode: 'merge',
      status: false,
    },
  );

  kube.apply({
    kind: 'Namespace',
    metadata: { name: 'shop', annotations: { 'trellis.dev/inject': 'enabled' } },
  });
  kube.apply({
    kind: 'Service',
    metadata: { name: 'web', namespace: 'shop' },
    spec: {
      clusterIP: WEB_CLUSTER_IP,
      selector: { app: 'web' },
      ports: [{ name: 'http', port: 80, targetPort: 8080 }],
    },
  });
  const core = kubeConfigForServer(kube.url).makeApiClient(CoreV1Api);
  /** A pod created through the API server (the webhook injects it): its containers, by kind. */
  const create = async (name: string, native: boolean, app: Json): Promise<KubeObject> => {
    const pod = await core.createNamespacedPod({
      namespace: 'shop',
      body: {
        apiVersion: 'v1',
        kind: 'Pod',
        metadata: {
          name,
          labels: { app: name.split('-')[0]! },
          annotations: { 'config.trellis.dev/native-sidecar': String(native) },
        },
        spec: {
          serviceAccountName: name.split('-')[0]!,
          containers: [{ name: 'app', image: 'app:1', ...app }],
        },
      } as V1Pod,
    });
    const names = (list: { name: string }[] | undefined) => (list ?? []).map((c) => c.name);
    assert.deepEqual(
      [names(pod.spec!.initContainers), names(pod.spec!.containers)],
      native ? [['trellis-init', 'trellis-proxy'], ['app']] : [['trellis-init'], ['trellis-proxy', 'app']],
    );
    return pod as unknown as KubeObject;
  };

  const web = await create('web-1', false, {
    ports: [{ name: 'http', containerPort: 8080 }],
    readinessProbe: { httpGet: { path: '/healthz', port: 'http' }, periodSeconds: 1 },
  });
  const server = await runPod(t, web, {
    kube,
    network,
    tokens,
    commands: { app: [NODE, '--input-type=module', '-e', SERVER_APP] },
  });
  const slice = kube.list('EndpointSlice').find((s) => s.metadata.name === 'web-runner')!;
  assert.deepEqual((slice['endpoints'] as Json[])[0]!['addresses'], [server.ip]);

  const clientPod = await create('client-1', true, {});
  const client = await runPod(t, clientPod, {
    kube,
    network,
    tokens,
    commands: { app: [NODE, '--input-type=module', '-e', CLIENT_APP] },
  });
  const logs = () => `${client.logs()}\n${server.logs()}`;
  const app = client.container('app');
  assert.equal(await app.exited, 0, `the client app failed\n${logs()}`);
  const answer = JSON.parse(app.stdout()) as { status: number; body: string };
  assert.equal(answer.status, 200, `${answer.body}\n${logs()}`);
  const served = JSON.parse(answer.body) as { path: string; headers: Record<string, string> };
  assert.equal(served.path, '/hello');
  assert.equal(served.headers['trellis-client-id'], 'spiffe://cluster.local/ns/shop/sa/client');
  assert.ok(tokens.authenticated() >= 2, 'both proxies got their certificate with their token');

  const scrape = async (ip: string) => (await network.get(ip, 4191, '/metrics')).body;
  const [clientMetrics, serverMetrics] = [await scrape(client.ip), await scrape(server.ip)];
  const peer = (sa: string) => `peer_identity="spiffe://cluster.local/ns/shop/sa/${sa}"`;
  for (const [metrics, name, labels] of [
    [clientMetrics, 'trellis_request_total', ['direction="outbound"']],
    [serverMetrics, 'trellis_request_total', ['direction="inbound"']],
    [clientMetrics, 'trellis_mesh_connections_total', ['direction="outbound"', peer('web')]],
    [serverMetrics, 'trellis_mesh_connections_total', ['direction="inbound"', peer('client')]],
  ] as const) {
    assert.ok(counter(metrics, name, labels) >= 1, `${name}{${labels.join(',')}}\n${metrics}`);
  }
});
