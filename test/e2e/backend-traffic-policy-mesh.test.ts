// An XBackendTrafficPolicy's retry budget (src/core/routes/backend-traffic-policy.ts) through real
// proxies with mTLS on one machine: applied with `trellis apply`, carried to the client proxy in
// the Service's route set as the retry.trellis.io/budget-* annotations (route-set.ts), and
// enforced by the proxy's RetryBudget: with the default budget a failing backend's requests are
// retried; with a policy of 0 percent and a minimum rate of one retry an hour none is, and each
// refused retry is counted as budget_exhausted. A policy with an unsupported field is refused
// with its line and field.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { idOf, identityFor, startMeshWorld } from '../helpers/mesh-pki.ts';
import { metric, portOf } from '../helpers/running-proxy.ts';
import { sendRequest } from '../helpers/mesh-echo.ts';
import { runCli } from '../helpers/cli.ts';

const SERVICE_AND_ROUTE = `apiVersion: v1
kind: Service
metadata: { name: down, namespace: default }
spec:
  ports: [{ port: 8080, targetPort: http }]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: down, namespace: default }
spec:
  parentRefs: [{ group: "", kind: Service, name: down, port: 8080 }]
  rules:
    - backendRefs: [{ name: down, port: 8080 }]
      retry: { codes: [503], attempts: 3, backoff: 1ms }
`;

const POLICY = `apiVersion: gateway.networking.x-k8s.io/v1alpha1
kind: XBackendTrafficPolicy
metadata: { name: no-retries, namespace: default }
spec:
  targetRefs: [{ group: "", kind: Service, name: down }]
  retryConstraint:
    budget: { percent: 0, interval: 10s }
    minRetryRate: { count: 1, interval: 1h }
`;

test(
  'an XBackendTrafficPolicy applied with trellis apply sets the retry budget the client proxy enforces',
  { timeout: 120_000 },
  async (t) => {
    const world = await startMeshWorld();
    t.after(() => world.close());
    const hits = new Map<string, number>();
    const app = http.createServer((req, res) => {
      hits.set(req.url ?? '', (hits.get(req.url ?? '') ?? 0) + 1);
      res.writeHead(503).end('unavailable');
    });
    await new Promise<void>((r) => app.listen(0, '127.0.0.1', r));
    t.after(() => {
      app.closeAllConnections();
      app.close();
    });
    const backend = await world.proxy({
      identity: await identityFor(world, 'down'),
      app: (app.address() as { port: number }).port,
    });
    await world.register('down', 'down-1', portOf(backend, 'inbound'), idOf('down'));
    const apply = async (name: string, yaml: string, ...flags: string[]) => {
      const file = join(world.root, name);
      await writeFile(file, yaml);
      return runCli(['apply', '--state', world.root, '-f', file, ...flags]);
    };
    const applied = await apply('route.yaml', SERVICE_AND_ROUTE);
    assert.equal(applied.code, 0, applied.stderr);
    await world.rescanRoutes();
    const client = await world.proxy({ identity: await identityFor(world, 'caller') });
    const out = portOf(client, 'outbound');
    let n = 0;
    /** Hits of one new path (1: not retried). */
    const hitsOfOne = async (): Promise<number> => {
      const path = `/down/${n++}`;
      const r = await sendRequest(out, `http://down.default:8080${path}`, { method: 'GET' });
      assert.equal(r.status, 503);
      return hits.get(path) ?? 0;
    };
    const until = async (what: string, ok: (hits: number) => boolean): Promise<void> => {
      const deadline = Date.now() + 20_000;
      while (!ok(await hitsOfOne())) {
        assert.ok(Date.now() < deadline, `timed out waiting for ${what}`);
        await new Promise((done) => setTimeout(done, 100));
      }
    };

    // The default budget (20% plus 10 a second) lets a few requests a second be retried.
    await until('the route to retry', (h) => h === 4);

    // A policy with an unsupported field is refused with its line and field; nothing changes.
    const refused = await apply(
      'bad.yaml',
      POLICY.replace('retryConstraint:', 'sessionPersistence: { sessionName: x }\n  retryConstraint:'),
    );
    assert.equal(refused.code, 2);
    assert.match(
      refused.stderr,
      /bad\.yaml:6:\d+: document 1: spec\.sessionPersistence: not supported: Trellis has no session persistence/,
    );

    // The policy: no retry fits its budget.
    const policy = await apply('policy.yaml', POLICY);
    assert.equal(policy.code, 0, policy.stderr);
    assert.match(policy.stdout, /xbackendtrafficpolicy\/no-retries\.default created/);
    await world.rescanRoutes();
    await until('the policy to be in force', (h) => h === 1);
    const exhaustedBefore = metric(client, 'trellis_retries_total', { outcome: 'budget_exhausted' });
    const requests = 40;
    for (let i = 0; i < requests; i++) assert.equal(await hitsOfOne(), 1, 'not retried');
    assert.ok(
      metric(client, 'trellis_retries_total', { outcome: 'budget_exhausted' }) >= exhaustedBefore + requests,
    );

    // Deleted, the Service's default budget is back.
    const deleted = await apply('policy.yaml', POLICY, '--delete');
    assert.equal(deleted.code, 0, deleted.stderr);
    await world.rescanRoutes();
    await until('the default budget again', (h) => h > 1);
  },
);
