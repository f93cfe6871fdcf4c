// Trellis's traffic kinds on Kubernetes end to end: `trellis control` (a real process) over the
// fake API server (test/fake-kube), the objects created with the real `kubectl apply`:
//   - an HTTPFault named by an HTTPRoute rule's ExtensionRef reaches a proxy's route set (the
//     proxy's Routes/Watch client and its route decisions: the request is aborted with the fault's
//     status), the route is Accepted without PartiallyInvalid; the HTTPFault made invalid, the
//     route's status names it and its problem;
//   - an XBackendTrafficPolicy's retry budget reaches the route set of the Service it targets,
//     its status.ancestors says Accepted for the Service; a newer policy on the same Service is
//     Conflicted, one with sessionPersistence Invalid (naming the field);
//   - an HTTPLocalRateLimitPolicy reaches a real proxy's inbound policy: over the limit, 429
//     rate-limited before the app.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { readFileSync } from 'node:fs';
import { silentLogger } from '../../src/core/log.ts';
import { seededRandom } from '../../src/core/random.ts';
import { OutboundRoutes } from '../../src/proxy/outbound/routes.ts';
import { validateProxyConfig } from '../../src/proxy/config.ts';
import { startProxy } from '../../src/proxy/proxy.ts';
import { FakeKubeServer } from '../fake-kube/server.ts';
import { waitFor } from '../helpers/cli.ts';
import { kubectlApply, startKubeControl, watchShopRoutes } from '../helpers/kube-control.ts';
import { portOf } from '../helpers/running-proxy.ts';

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

const fault = (httpStatus: number) => `apiVersion: traffic.trellis.dev/v1alpha1
kind: HTTPFault
metadata: { name: flaky, namespace: shop }
spec:
  abort: { httpStatus: ${httpStatus}, percentage: 100 }
`;

const ROUTE = `apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: faulty, namespace: shop }
spec:
  parentRefs: [{ group: "", kind: Service, name: web, port: 80 }]
  rules:
  - matches: [{ path: { type: PathPrefix, value: /abort } }]
    filters: [{ type: ExtensionRef, extensionRef: { group: traffic.trellis.dev, kind: HTTPFault, name: flaky } }]
    backendRefs: [{ name: web, port: 80 }]
  - backendRefs: [{ name: web, port: 80 }]
    retry: { codes: [503], attempts: 2 }
`;

const budgetPolicy = (name: string, extra = '') => `apiVersion: gateway.networking.x-k8s.io/v1alpha1
kind: XBackendTrafficPolicy
metadata: { name: ${name}, namespace: shop }
spec:
  targetRefs: [{ group: "", kind: Service, name: web }]
  retryConstraint:
    budget: { percent: 5, interval: 30s }
    minRetryRate: { count: 3, interval: 10s }
${extra}`;

const rateLimited = (appPort: number) => `apiVersion: policy.trellis.dev/v1alpha1
kind: Server
metadata: { name: web-app, namespace: shop }
spec: { workload: web-7d4b9c8f5-9hzlm, port: ${appPort}, protocol: http1 }
---
apiVersion: policy.trellis.dev/v1alpha1
kind: AuthorizationPolicy
metadata: { name: web-app-anyone, namespace: shop }
spec: { server: web-app, from: { unauthenticated: true } }
---
apiVersion: policy.trellis.dev/v1alpha1
kind: HTTPLocalRateLimitPolicy
metadata: { name: web-app-limits, namespace: shop }
spec:
  targetRef: { group: policy.trellis.dev, kind: Server, name: web-app }
  total: { requestsPerSecond: 3 }
`;

/** This controller's status entry of an object (route parents, policy ancestors) for Service web. */
function ours(kube: FakeKubeServer, kind: string, name: string): Json | null {
  const status = (kube.get(kind, 'shop', name) as Json | undefined)?.['status'];
  const entries = (status?.['parents'] ?? status?.['ancestors'] ?? []) as Json[];
  return entries.find((p) => p['controllerName'] === 'trellis.dev/mesh') ?? null;
}

const condition = (entry: Json | null, type: string): Json | undefined =>
  (entry?.['conditions'] as Json[] | undefined)?.find((c) => c['type'] === type);

function get(port: number, path: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path, agent: false }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', reject);
    req.setTimeout(5000, () => req.destroy(new Error('timed out')));
  });
}

test('on Kubernetes: HTTPFault aborts, XBackendTrafficPolicy sets the retry budget, HTTPLocalRateLimitPolicy answers 429', async (t) => {
  const kube = new FakeKubeServer();
  await kube.start();
  t.after(() => kube.close());
  kube.applyYaml(readFileSync(new URL('../fake-kube/fixtures/web.yaml', import.meta.url), 'utf8'));
  await kubectlApply(kube.url, `${fault(503)}---\n${ROUTE}---\n${budgetPolicy('web-budget')}`);

  const { control, ready } = await startKubeControl(t, kube.url);

  // A proxy's route watch for web:80, and its route decisions.
  const watched = watchShopRoutes(t, ready['grpc']!, 'web', 80);
  const routes = new OutboundRoutes({
    address: '127.0.0.1:1',
    namespace: 'shop',
    waitMs: 10,
    log: silentLogger,
    random: seededRandom(1),
    startWatch: () => ({ close() {} }),
  });
  const decide = (path: string) => {
    const table = watched.table();
    return table === null
      ? null
      : routes.decide({ host: 'web.shop', port: 80 }, table, {
          method: 'GET',
          pathAndQuery: path,
          headers: {},
          grpc: false,
          authority: 'web.shop',
        });
  };

  await t.test('an HTTPFault aborts the requests of the rule that names it', async () => {
    const aborted = await waitFor('the fault in the route set', async () => {
      const d = decide('/abort/1');
      return d?.kind === 'abort' ? d : null;
    });
    assert.equal(aborted.kind === 'abort' && aborted.status, 503);
    assert.equal(decide('/other')?.kind, 'forward');
    const status = await waitFor('the status of faulty', async () => ours(kube, 'HTTPRoute', 'faulty'));
    assert.equal(condition(status, 'Accepted')?.['status'], 'True');
    assert.equal(condition(status, 'PartiallyInvalid'), undefined, JSON.stringify(status));

    // Another status: the proxy follows.
    await kubectlApply(kube.url, fault(429));
    await waitFor('the new fault status', async () => {
      const d = decide('/abort/2');
      return d?.kind === 'abort' && d.status === 429 ? true : null;
    });

    // Made invalid (kubectl does not check the schema with --validate=false): the route says why.
    await kubectlApply(kube.url, fault(7));
    const partial = await waitFor('PartiallyInvalid on faulty', async () => {
      const entry = ours(kube, 'HTTPRoute', 'faulty');
      return condition(entry, 'PartiallyInvalid')?.['status'] === 'True' ? entry : null;
    });
    assert.match(
      condition(partial, 'PartiallyInvalid')!['message'],
      /rule 0: HTTPFault shop\/flaky is invalid: spec\.abort\.httpStatus: expected an HTTP status 200\.\.599/,
    );
    assert.match(control.stderr(), /invalid HTTPFault skipped/);
    await waitFor('the rule to answer 500 without its fault', async () =>
      decide('/abort/3')?.kind === 'refuse' ? true : null,
    );
  });

  await t.test("an XBackendTrafficPolicy's retry budget reaches the Service's route set", async () => {
    const budget = await waitFor('the budget in the route set', async () => {
      const b = watched.table()?.policy?.budget;
      return b?.ratio === 0.05 ? b : null;
    });
    assert.deepEqual(budget, { ratio: 0.05, minPerSecond: 0.3, windowMs: 30_000 });
    const accepted = await waitFor('the policy status', async () =>
      ours(kube, 'XBackendTrafficPolicy', 'web-budget'),
    );
    assert.deepEqual(accepted['ancestorRef'], { group: '', kind: 'Service', namespace: 'shop', name: 'web' });
    assert.deepEqual(
      [condition(accepted, 'Accepted')?.['status'], condition(accepted, 'Accepted')?.['reason']],
      ['True', 'Accepted'],
    );
    assert.match(condition(accepted, 'Accepted')!['message'], /5% of requests over 30s plus 0\.3 a second/);

    // A newer policy on the same Service: Conflicted; one with sessionPersistence: Invalid.
    await new Promise((resolve) => setTimeout(resolve, 1100)); // a later creationTimestamp
    await kubectlApply(
      kube.url,
      `${budgetPolicy('web-budget-2')}---\n${budgetPolicy('web-sticky', '  sessionPersistence: { sessionName: s }\n')}`,
    );
    const conflicted = await waitFor('Conflicted', async () => {
      const c = condition(ours(kube, 'XBackendTrafficPolicy', 'web-budget-2'), 'Accepted');
      return c?.['reason'] === 'Conflicted' ? c : null;
    });
    assert.match(conflicted['message'], /older XBackendTrafficPolicy shop\/web-budget/);
    const invalid = await waitFor(
      'Invalid',
      async () => condition(ours(kube, 'XBackendTrafficPolicy', 'web-sticky'), 'Accepted') ?? null,
    );
    assert.deepEqual([invalid['status'], invalid['reason']], ['False', 'Invalid']);
    assert.match(invalid['message'], /spec\.sessionPersistence: not supported/);
  });

  await t.test('an HTTPLocalRateLimitPolicy answers 429 over its limit', async () => {
    let seen = 0;
    const app = http.createServer((req, res) => {
      seen++;
      req.resume();
      res.end('ok');
    });
    await new Promise<void>((r) => app.listen(0, '127.0.0.1', r));
    t.after(() => app.close());
    const appPort = (app.address() as { port: number }).port;
    await kubectlApply(kube.url, rateLimited(appPort));
    const proxy = await startProxy(
      validateProxyConfig({
        inboundListen: '127.0.0.1:0',
        outboundListen: '127.0.0.1:0',
        adminListen: '127.0.0.1:0',
        appPort,
        discovery: { address: ready['grpc'], failFastMs: 3000 },
        workload: { name: 'web-7d4b9c8f5-9hzlm', namespace: 'shop' },
        policy: { address: ready['grpc'], default: 'deny' },
        log: { level: 'off' },
        timeouts: { connectMs: 2000, drainGraceMs: 200 },
      }),
      silentLogger,
      undefined,
      { identity: null },
    );
    t.after(() => proxy.shutdown(200));
    const inbound = portOf(proxy, 'inbound');
    const statuses = await waitFor('429 from the proxy', async () => {
      const burst: number[] = [];
      for (let i = 0; i < 8; i++) burst.push(await get(inbound, `/x/${i}`));
      return burst.includes(429) ? burst : null;
    });
    assert.ok(statuses.filter((s) => s === 200).length <= 3, statuses.join(','));
    assert.ok(seen >= 1, 'allowed requests reached the app');
  });

  assert.equal(await control.stop(), 0, control.stderr());
});
