// `trellis tap` against a control plane in Kubernetes mode: `trellis control` (a real process)
// over the fake API server (test/fake-kube), and a real proxy (in-process) that got its
// certificate from that control plane's Identity API with a ServiceAccount token the fake server's
// TokenReview vouches for, serving taps on an mTLS tap listener (--tap-listen) on 127.0.0.1.
// The pod object in the fake server names that listener as its proxy container's `trellis-tap`
// port (the injector's name for port 4190) and has no admin address the control plane could use:
// the only way to the proxy's events is the mTLS path, with the control plane's own client
// certificate and a check that the proxy presents the pod's ServiceAccount identity.
//
// What it cannot show: a pod IP that is not loopback (the pod's IP is 127.0.0.1 here; that the
// proxy's admin listener refuses non-loopback callers is tested in test/unit/tap.test.ts), and the
// injected pod's iptables rules leaving port 4190 alone (test/unit/injector-admission.test.ts
// checks the argument; the pod runner of test/long runs the rules).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { once } from 'node:events';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import { FakeKubeServer, type KubeObject } from '../fake-kube/server.ts';
import { serveServiceAccountTokens } from '../fake-kube/tokens.ts';
import { runCli, startCli, waitFor } from '../helpers/cli.ts';
import { portOf } from '../helpers/running-proxy.ts';
import { validateProxyConfig } from '../../src/proxy/config.ts';
import { startProxy } from '../../src/proxy/proxy.ts';
import { silentLogger } from '../../src/core/log.ts';
import { TOKEN_AUDIENCE } from '../../src/control/identity/tokens.ts';
import { removeTempDir } from '../helpers/temp-dir.ts';

const OPERATOR_TOKEN = 'operator-secret-for-the-tap-test';

/** A running, ready, injected pod of namespace shop whose proxy's tap listener is at 127.0.0.1:tapPort. */
function pod(name: string, app: string, serviceAccount: string, tapPort: number | null): KubeObject {
  const ports = [{ name: 'trellis-admin', containerPort: 4191 }];
  if (tapPort !== null) ports.push({ name: 'trellis-tap', containerPort: tapPort });
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: {
      name,
      namespace: 'shop',
      labels: { app },
      annotations: { 'trellis.dev/proxy-injected': 'true' },
    },
    spec: {
      serviceAccountName: serviceAccount,
      initContainers: [
        { name: 'trellis-proxy', image: 'localhost/trellis:test', restartPolicy: 'Always', ports },
      ],
      containers: [{ name: 'app', image: 'web:1', ports: [{ containerPort: 8080 }] }],
    },
    status: {
      phase: 'Running',
      podIP: '127.0.0.1',
      conditions: [{ type: 'Ready', status: 'True' }],
    },
  } as unknown as KubeObject;
}

test("trellis tap on Kubernetes: the control plane taps a pod's proxy over mTLS with its own certificate; GET /api/tap needs the operator token; a proxy with another identity or no tap port is named at once", async (t) => {
  const kube = new FakeKubeServer();
  await kube.start();
  t.after(() => kube.close());
  const tokens = serveServiceAccountTokens(kube);
  const dir = await mkdtemp(join(tmpdir(), 'trellis-tap-kube-'));
  t.after(() => removeTempDir(dir));
  const operatorFile = join(dir, 'operator-token');
  await writeFile(operatorFile, OPERATOR_TOKEN + '\n', { mode: 0o600 });

  const control = startCli(t, [
    'control',
    '--kubeconfig-server',
    kube.url,
    '--grpc-listen',
    '127.0.0.1:0',
    '--http-listen',
    '127.0.0.1:0',
    '--operator-token-file',
    operatorFile,
    '--log-level',
    'warn',
  ]);
  const ready = await waitFor('the control plane', async () => {
    const line = control.stdout().split('\n')[0];
    return line === undefined || !control.stdout().includes('\n')
      ? null
      : (JSON.parse(line) as Record<string, string>);
  });
  const api = `http://${ready['http']}`;

  // The proxy of pod shop/web-1 (ServiceAccount web): its certificate from the control plane.
  const tokenFile = join(dir, 'sa-token');
  await writeFile(tokenFile, tokens.issue('shop', 'web', [TOKEN_AUDIENCE]));
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
      workload: { name: 'web-1', namespace: 'shop' },
      identity: { address: ready['grpc'], tokenFile, serviceAccount: 'web' },
      tap: { listen: '127.0.0.1:0' },
      log: { level: 'off' },
    }),
    silentLogger,
    undefined,
    { authorizer: null },
  );
  t.after(() => proxy.shutdown(0));
  const admin = `http://127.0.0.1:${portOf(proxy, 'admin')}`;
  await waitFor('the proxy certificate', async () =>
    (await fetch(`${admin}/identity`)).status === 200 ? true : null,
  );
  const tapPort = portOf(proxy, 'tap');
  kube.apply(pod('web-1', 'web', 'web', tapPort));
  // The same proxy listed as a pod of ServiceAccount billing, and a pod injected without a tap port.
  kube.apply(pod('billing-1', 'billing', 'billing', tapPort));
  kube.apply(pod('old-1', 'old', 'old', null));

  // Reads that show live requests need the operator token; other reads stay open.
  const anonymous = await fetch(`${api}/api/tap?namespace=shop&workload=web`);
  assert.equal(anonymous.status, 401);
  assert.match(
    await anonymous.text(),
    /GET \/api\/tap shows live requests and needs an authenticated operator/,
  );
  assert.equal((await fetch(`${api}/api/traces`)).status, 401);
  assert.equal((await fetch(`${api}/api/services`)).status, 200);

  // `trellis tap RESOURCE -n shop` through the control plane's API, with the operator token.
  const tapArgs = (resource: string, ...more: string[]) => [
    'tap',
    resource,
    '-n',
    'shop',
    '--control',
    api,
    '--operator-token-file',
    operatorFile,
    ...more,
  ];
  // It gets the proxy's events, over mTLS.
  const tap = startCli(t, tapArgs('web', '--max-events', '1', '-o', 'json'));
  await waitFor('an event', async () => {
    await (await fetch(`http://127.0.0.1:${portOf(proxy, 'inbound')}/over-mtls`)).text();
    return tap.proc.exitCode !== null ? true : null;
  });
  assert.equal(tap.proc.exitCode, 0, tap.stderr());
  const event = JSON.parse(tap.stdout().trim().split('\n')[0]!) as Record<string, unknown>;
  assert.equal(event['path'], '/over-mtls');
  assert.equal(event['namespace'], 'shop');
  assert.equal(event['instance'], 'web-1');
  assert.equal(event['direction'], 'inbound');
  // The proxy let the control plane's identity in, and refused no one.
  const metrics = await (await fetch(`${admin}/metrics`)).text();
  assert.match(metrics, /^trellis_tap_events_total [1-9]/m);
  assert.doesNotMatch(metrics, /^trellis_tap_refused_total\{reason="(identity|handshake)"\} [1-9]/m);

  // A pod whose proxy presents another identity than its ServiceAccount's is refused by the control
  // plane; a pod without a tap port says so; both at once.
  const billing = await runCli(tapArgs('billing'));
  assert.match(
    billing.stderr,
    /cannot tap shop\/billing-1: .*the proxy's certificate names spiffe:\/\/cluster\.local\/ns\/shop\/sa\/web, not spiffe:\/\/cluster\.local\/ns\/shop\/sa\/billing/,
  );
  const old = await runCli(tapArgs('old'));
  assert.match(
    old.stderr,
    /cannot tap shop\/old-1: it has no proxy to tap \(registered without an admin address or a tap port\)/,
  );
  // Without the token, the CLI says what to do.
  const refused = await runCli(['tap', 'web', '-n', 'shop', '--control', api]);
  assert.equal(refused.code, 1);
  assert.match(refused.stderr, /HTTP 401.*operator token/);
});
