// Inbound rate limits end to end (src/proxy/policy/rate-limit.ts): an HTTPLocalRateLimitPolicy
// in the state folder reaches the server's proxy with its inbound policy (Policy.WatchInbound),
// and requests from meshed clients (mTLS) over their identity's limit get 429 with
// `trellis-proxy-error: rate-limited` before reaching the app, while another identity is not
// limited by the first one's bucket and an override's identity gets its own limit.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { writePolicyFile } from '../../src/control/policy/state-files.ts';
import type { PolicyResource } from '../../src/control/policy/model.ts';
import { readResources } from '../../src/control/resources.ts';
import { idOf, identityFor, startMeshWorld } from '../helpers/mesh-pki.ts';
import { proxiedRequest } from '../helpers/mesh-echo.ts';
import { metric, portOf } from '../helpers/running-proxy.ts';

const policy = (appPort: number) => `
apiVersion: policy.trellis.dev/v1alpha1
kind: Server
metadata: { name: web-http, namespace: default }
spec: { workload: web, port: ${appPort}, protocol: http1 }
---
apiVersion: policy.trellis.dev/v1alpha1
kind: AuthorizationPolicy
metadata: { name: everyone, namespace: default }
spec: { server: web-http, from: { unauthenticated: true } }
---
apiVersion: policy.trellis.dev/v1alpha1
kind: HTTPLocalRateLimitPolicy
metadata: { name: web-limits, namespace: default }
spec:
  targetRef: { group: policy.trellis.dev, kind: Server, name: web-http }
  total: { requestsPerSecond: 100 }
  identity: { requestsPerSecond: 5 }
  overrides: [{ requestsPerSecond: 20, identities: ["${idOf('vip')}"] }]
`;

test('HTTPLocalRateLimitPolicy: 429 rate-limited per client identity', { timeout: 120_000 }, async (t) => {
  const world = await startMeshWorld();
  t.after(() => world.close());
  let seen = 0;
  const app = http.createServer((req, res) => {
    seen++;
    req.resume();
    res.end('ok');
  });
  await new Promise<void>((r) => app.listen(0, '127.0.0.1', r));
  t.after(() => app.close());
  const appPort = (app.address() as { port: number }).port;

  const { resources, problems } = readResources(policy(appPort), 'policy.yaml');
  assert.deepEqual(problems, []);
  for (const r of resources) await writePolicyFile(world.root, r as PolicyResource);
  const server = await world.proxy({
    identity: await identityFor(world, 'web'),
    app: appPort,
    config: {
      workload: { name: 'web', namespace: 'default' },
      policy: { address: world.destination, default: 'all-unauthenticated' },
    },
  });
  await world.register('web', 'web-1', portOf(server, 'inbound'), idOf('web'));
  const client = async (sa: string) => {
    const p = await world.proxy({ identity: await identityFor(world, sa) });
    const out = portOf(p, 'outbound');
    return () => proxiedRequest(out, 'web.default:8080', '/');
  };
  const a = await client('caller-a');
  const b = await client('caller-b');
  const vip = await client('vip');

  // Until the server's proxy has the policy: a's sixth quick request is limited.
  const deadline = Date.now() + 20_000;
  let limited = false;
  while (!limited && Date.now() < deadline) {
    for (let i = 0; i < 8 && !limited; i++) limited = (await a()).status === 429;
    if (!limited) await new Promise((r) => setTimeout(r, 200));
  }
  assert.ok(limited, 'the rate limit never applied');
  // Let every bucket fill again (5/s: one second).
  await new Promise((r) => setTimeout(r, 1200));

  await t.test(
    'over its identity limit a client gets 429 rate-limited, and the app sees none of those',
    async () => {
      const before = seen;
      const counted = metric(server, 'trellis_inbound_rate_limited_total', { limit: 'identity' });
      const started = performance.now();
      let ok = 0;
      let refused = 0;
      for (let i = 0; i < 15; i++) {
        const r = await a();
        if (r.status === 200) ok++;
        else {
          assert.equal(r.status, 429);
          assert.equal(r.headers['trellis-proxy-error'], 'rate-limited');
          refused++;
        }
      }
      const seconds = (performance.now() - started) / 1000;
      // A bucket of 5 plus 5 a second of what the loop took.
      assert.ok(ok >= 5 && ok <= 5 + Math.ceil(5 * seconds) + 1, `${ok} allowed in ${seconds} s`);
      assert.ok(refused > 0);
      assert.equal(seen - before, ok);
      assert.equal(
        metric(server, 'trellis_inbound_rate_limited_total', { limit: 'identity' }),
        counted + refused,
      );
    },
  );

  await t.test("another identity is not limited by the first one's bucket", async () => {
    // a's bucket is emptied again right before (it refills 5 a second: a pause of the machine
    // between the subtests gave a a token back); b's is full.
    let aLimited = false;
    for (let i = 0; i < 20 && !aLimited; i++) aLimited = (await a()).status === 429;
    assert.ok(aLimited, "a's requests were never limited");
    for (let i = 0; i < 5; i++) assert.equal((await b()).status, 200);
  });

  await t.test('an override identity gets its own, larger limit', async () => {
    let ok = 0;
    for (let i = 0; i < 12; i++) if ((await vip()).status === 200) ok++;
    assert.ok(ok >= 12 - 1, `${ok} of 12 allowed under a limit of 20`);
  });
});
