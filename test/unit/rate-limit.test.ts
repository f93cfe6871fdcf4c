// Inbound rate limits: the token bucket (property-based: never more than a second's burst plus
// what the elapsed time refills), the limiter of one Server (identity, override and total limits;
// one identity's bucket never limits another; unauthenticated clients share one), the bound on
// per-identity buckets (measured: size and memory), the HTTPLocalRateLimitPolicy schema
// (property-based; each bad field named), and its way from the control plane's model to the
// proxy's authorizer.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { silentLogger } from '../../src/core/log.ts';
import { readResources } from '../../src/control/resources.ts';
import { buildInboundPolicy } from '../../src/control/policy/model.ts';
import { compilePolicy } from '../../src/proxy/policy/decide.ts';
import {
  MAX_IDENTITY_BUCKETS,
  RateLimiter,
  rateLimitEvictions,
  TokenBucket,
} from '../../src/proxy/policy/rate-limit.ts';
import type { RateLimitPolicyResource } from '../../src/control/policy/model.ts';
import { InboundPolicy } from '../../src/proxy/mesh/inbound-policy.ts';
import { createAuthorizer } from '../../src/proxy/policy/authorizer.ts';
import { youngBytesPerCall } from '../helpers/young-allocation.ts';

const limiter = (
  limit: {
    totalRps?: number;
    identityRps?: number;
    overrides?: { requestsPerSecond: number; identities: string[] }[];
  },
  clock: { t: number },
  maxIdentities?: number,
) =>
  new RateLimiter(
    {
      name: 'shop/limits',
      totalRps: limit.totalRps ?? 0,
      identityRps: limit.identityRps ?? 0,
      overrides: limit.overrides ?? [],
    },
    { now: () => clock.t, ...(maxIdentities === undefined ? {} : { maxIdentities }) },
  );

describe('TokenBucket', () => {
  it('holds one second of requests and refills continuously', () => {
    const b = new TokenBucket(4, 0);
    assert.deepEqual(
      [0, 0, 0, 0, 0].map((t) => b.take(t)),
      [true, true, true, true, false],
    );
    assert.equal(b.take(100), false); // 0.4 of a token
    assert.equal(b.take(250), true); // 1.0
    assert.equal(b.take(250), false);
    // A long pause refills only up to the burst.
    assert.deepEqual(
      [10_000, 10_000, 10_000, 10_000, 10_000].map((t) => b.take(t)),
      [true, true, true, true, false],
    );
  });

  it('never allows more than the burst plus what the elapsed time refills', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 50 }),
        fc.array(fc.integer({ min: 0, max: 200 }), { minLength: 1, maxLength: 300 }),
        (rps, gaps) => {
          const b = new TokenBucket(rps, 0);
          let t = 0;
          let allowed = 0;
          for (const gap of gaps) {
            t += gap;
            if (b.take(t)) allowed++;
          }
          assert.ok(allowed <= rps + (rps * t) / 1000 + 1e-9, `${allowed} in ${t} ms at ${rps}/s`);
        },
      ),
    );
  });
});

describe('RateLimiter', () => {
  it('limits each identity on its own: another identity is not limited by the first one bucket', () => {
    const clock = { t: 0 };
    const l = limiter({ identityRps: 2 }, clock);
    assert.deepEqual([l.check('a'), l.check('a'), l.check('a')], [null, null, 'identity']);
    assert.deepEqual([l.check('b'), l.check('b'), l.check('b')], [null, null, 'identity']);
    // Unauthenticated clients share one bucket.
    assert.deepEqual([l.check(null), l.check(null), l.check(null)], [null, null, 'identity']);
    clock.t = 500;
    assert.equal(l.check('a'), null);
  });

  it('an override replaces the identity limit and is shared by its identities; total is shared by all', () => {
    const clock = { t: 0 };
    const l = limiter(
      { totalRps: 6, identityRps: 1, overrides: [{ requestsPerSecond: 3, identities: ['v1', 'v2'] }] },
      clock,
    );
    assert.deepEqual(
      [l.check('v1'), l.check('v2'), l.check('v1'), l.check('v2')],
      [null, null, null, 'override'],
    );
    assert.deepEqual([l.check('a'), l.check('a')], [null, 'identity']);
    assert.deepEqual([l.check('b'), l.check('c'), l.check('d')], [null, null, 'total']);
  });

  it('a client over its own limit does not spend the total the others share', () => {
    const clock = { t: 0 };
    const l = limiter({ totalRps: 3, identityRps: 1 }, clock);
    for (let i = 0; i < 100; i++) l.check('greedy');
    assert.deepEqual([l.check('a'), l.check('b')], [null, null]);
  });

  it('keeps at most MAX_IDENTITY_BUCKETS identities, evicting identities not used since (measured)', (t) => {
    const clock = { t: 0 };
    const before = rateLimitEvictions();
    const heapBefore = process.memoryUsage().heapUsed;
    const l = limiter({ identityRps: 1 }, clock);
    const n = MAX_IDENTITY_BUCKETS * 3;
    for (let i = 0; i < n; i++) l.check(`spiffe://mesh.test/ns/default/sa/client-${i}`);
    assert.equal(l.identityBuckets, MAX_IDENTITY_BUCKETS);
    assert.equal(rateLimitEvictions() - before, n - MAX_IDENTITY_BUCKETS);
    const heapAfter = process.memoryUsage().heapUsed;
    t.diagnostic(
      `${MAX_IDENTITY_BUCKETS} buckets after ${n} identities: heap +${Math.round((heapAfter - heapBefore) / 1024)} KiB`,
    );
    // The most recent identities are kept, the oldest evicted: a recent one is still limited.
    assert.equal(l.check(`spiffe://mesh.test/ns/default/sa/client-${n - 1}`), 'identity');
    assert.equal(l.check('spiffe://mesh.test/ns/default/sa/client-0'), null);
  });

  it('recently used identities survive eviction', () => {
    const clock = { t: 0 };
    const l = limiter({ identityRps: 1 }, clock, 3);
    l.check('keep');
    l.check('x');
    l.check('y');
    assert.equal(l.check('keep'), 'identity'); // touched: now the most recent
    l.check('z'); // evicts x
    assert.equal(l.identityBuckets, 3);
    assert.equal(l.check('keep'), 'identity');
    assert.equal(l.check('x'), null); // a fresh bucket
  });

  it('under churn past the bound, identities in use keep their buckets and the bound holds', () => {
    const clock = { t: 0 };
    const l = limiter({ identityRps: 1 }, clock, 50);
    for (let i = 0; i < 10; i++) l.check(`hot-${i}`);
    for (let i = 0; i < 5_000; i++) {
      l.check(`cold-${i}`); // each new identity evicts one
      if (i % 20 === 0) for (let h = 0; h < 10; h++) l.check(`hot-${h}`);
    }
    assert.equal(l.identityBuckets, 50);
    // The hot identities were used between every sweep of the eviction hand: still limited.
    for (let h = 0; h < 10; h++) assert.equal(l.check(`hot-${h}`), 'identity');
  });

  it('a check of an identity it holds allocates nothing (no Map reordering per request)', () => {
    const clock = { t: 0 };
    const l = limiter({ identityRps: 1e9 }, clock);
    const ids = ['spiffe://a.test/ns/x/sa/a', 'spiffe://a.test/ns/x/sa/b', 'spiffe://a.test/ns/x/sa/c'];
    const perCheck = youngBytesPerCall((n) => {
      for (let i = 0; i < n; i++) l.check(ids[i % 3]!);
    }, 3_000);
    // Reordering a Map per check (delete and set) cost ~80-90 bytes per check here.
    assert.ok(Math.min(...perCheck) < 20, `bytes per check: ${perCheck.map((b) => b.toFixed(1)).join(', ')}`);
  });
});

const DOC = (spec: string) =>
  `apiVersion: policy.trellis.dev/v1alpha1\nkind: HTTPLocalRateLimitPolicy\nmetadata: { name: limits, namespace: shop }\nspec:\n${spec}`;
const TARGET = '  targetRef: { group: policy.trellis.dev, kind: Server, name: web-http }\n';

describe('HTTPLocalRateLimitPolicy schema', () => {
  it('is accepted with its limits', () => {
    const { resources, problems } = readResources(
      DOC(
        TARGET +
          '  total: { requestsPerSecond: 100 }\n  identity: { requestsPerSecond: 10 }\n' +
          '  overrides: [{ requestsPerSecond: 50, identities: ["spiffe://cluster.local/ns/shop/sa/batch"] }]\n',
      ),
      'l.yaml',
    );
    assert.deepEqual(problems, []);
    assert.deepEqual(resources[0], {
      kind: 'HTTPLocalRateLimitPolicy',
      namespace: 'shop',
      name: 'limits',
      spec: {
        targetRef: { group: 'policy.trellis.dev', kind: 'Server', name: 'web-http' },
        total: { requestsPerSecond: 100 },
        identity: { requestsPerSecond: 10 },
        overrides: [{ requestsPerSecond: 50, identities: ['spiffe://cluster.local/ns/shop/sa/batch'] }],
      },
    });
  });

  it('names each bad field and why', () => {
    const problems = (spec: string) =>
      readResources(DOC(spec), 'l.yaml').problems.map((p) => p.replace(/^l\.yaml:\d+:\d+: /, ''));
    assert.deepEqual(problems(TARGET), [
      'document 1: spec: limits nothing: give total, identity or overrides',
    ]);
    assert.deepEqual(
      problems(TARGET + '  total: { requestsPerSecond: 5 }\n  identity: { requestsPerSecond: 10 }\n'),
      ['document 1: spec: identity and override limits must be at most total.requestsPerSecond'],
    );
    assert.deepEqual(problems(TARGET + '  identity: { requestsPerSecond: 0 }\n'), [
      'document 1: spec.identity.requestsPerSecond: expected a number of requests per second 1..1000000',
    ]);
    assert.deepEqual(
      problems(
        '  targetRef: { group: policy.trellis.dev, kind: Pod, name: x }\n  identity: { requestsPerSecond: 1 }\n',
      ),
      ['document 1: spec.targetRef.kind: expected Server (only a Server can be targeted)'],
    );
    assert.deepEqual(problems(TARGET + '  overrides: [{ requestsPerSecond: 1, identities: [web] }]\n'), [
      'document 1: spec.overrides.0.identities.0: expected a SPIFFE ID such as spiffe://cluster.local/ns/shop/sa/web',
    ]);
    assert.deepEqual(
      problems(
        TARGET +
          '  overrides: [{ requestsPerSecond: 1, identities: ["spiffe://a/b"] }, { requestsPerSecond: 2, identities: ["spiffe://a/b"] }]\n',
      ),
      ['document 1: spec.overrides: an identity is listed in two overrides (or twice)'],
    );
  });

  it('never throws, and what it accepts has limits within total', () => {
    const rps = fc.oneof(fc.integer({ min: -2, max: 2_000_000 }), fc.double(), fc.string());
    const spec = fc.record(
      {
        targetRef: fc.oneof(
          fc.anything(),
          fc.constant({ group: 'policy.trellis.dev', kind: 'Server', name: 'web' }),
        ),
        total: fc.record({ requestsPerSecond: rps }),
        identity: fc.record({ requestsPerSecond: rps }),
        overrides: fc.array(
          fc.record({
            requestsPerSecond: rps,
            identities: fc.array(fc.constantFrom('spiffe://a/b', 'spiffe://a/c', 'x')),
          }),
        ),
        extra: fc.anything(),
      },
      { requiredKeys: [] },
    );
    fc.assert(
      fc.property(spec, (s) => {
        const doc = JSON.stringify({
          apiVersion: 'policy.trellis.dev/v1alpha1',
          kind: 'HTTPLocalRateLimitPolicy',
          metadata: { name: 'l' },
          spec: s,
        });
        const { resources, problems } = readResources(doc, 'l.json');
        const r = resources[0] as RateLimitPolicyResource | undefined;
        assert.equal(r === undefined, problems.length > 0);
        if (r === undefined) return;
        const total = r.spec.total?.requestsPerSecond ?? Infinity;
        for (const o of r.spec.overrides) assert.ok(o.requestsPerSecond <= total);
        assert.ok((r.spec.identity?.requestsPerSecond ?? 0) <= total);
      }),
      { numRuns: 300 },
    );
  });
});

describe('from the control plane to the proxy', () => {
  const server = {
    kind: 'Server' as const,
    namespace: 'shop',
    name: 'web-http',
    spec: { workload: 'web', port: 8080, protocol: 'http1' as const },
  };
  const limits = (name: string, identityRps: number): RateLimitPolicyResource => ({
    kind: 'HTTPLocalRateLimitPolicy',
    namespace: 'shop',
    name,
    spec: {
      targetRef: { group: 'policy.trellis.dev', kind: 'Server', name: 'web-http' },
      identity: { requestsPerSecond: identityRps },
      overrides: [],
    },
  });

  it('the Server carries the first rate limit that targets it; the proxy limits its port only', () => {
    const { policy } = buildInboundPolicy(
      {
        servers: [server],
        authorizations: [
          {
            kind: 'AuthorizationPolicy',
            namespace: 'shop',
            name: 'all',
            spec: {
              server: 'web-http',
              from: { identities: [], namespaces: [], networks: [], unauthenticated: true },
              routes: [],
            },
          },
        ],
        rateLimits: [limits('b', 5), limits('a', 1)],
      },
      { namespace: 'shop', name: 'web', labels: {}, namedPorts: new Map() },
    );
    assert.deepEqual(policy.servers?.[0]?.rateLimit, {
      name: 'shop/a',
      totalRps: 0,
      identityRps: 1,
      overrides: [],
    });
    const compiled = compilePolicy(JSON.parse(JSON.stringify(policy)));
    const l = compiled.servers.get(8080)?.rateLimit;
    assert.ok(l);
    assert.deepEqual([l.check('x'), l.check('x')], [null, 'identity']);
  });

  it('the inbound gate answers rate-limited (after authorization) and counts it', () => {
    const counted: string[] = [];
    const authorizer = createAuthorizer({
      defaultPolicy: 'all-unauthenticated',
      namespace: 'shop',
      workload: 'web',
      log: silentLogger,
    });
    // No Server: no limit, whatever the rate.
    const gate = new InboundPolicy({
      authorizer,
      clientIdHeader: '',
      metrics: {
        authorized: () => undefined,
        proxyError: () => undefined,
        rateLimited: (l) => counted.push(l),
      },
      log: silentLogger,
    });
    for (let i = 0; i < 50; i++) assert.equal(gate.checkRequest(8080, 'a', '127.0.0.1', 'GET', '/'), null);
    const fake = {
      ...authorizer,
      checkRequest: () => ({ allowed: true, server: 's', policy: 'p', audited: false }),
      rateLimit: (_port: number, identity: string | null) =>
        identity === 'a' ? ('identity' as const) : null,
    };
    const limited = new InboundPolicy({
      authorizer: fake,
      clientIdHeader: '',
      metrics: {
        authorized: () => undefined,
        proxyError: () => undefined,
        rateLimited: (l) => counted.push(l),
      },
      log: silentLogger,
    });
    assert.equal(limited.checkRequest(8080, 'a', '127.0.0.1', 'GET', '/'), 'rate-limited');
    assert.equal(limited.checkRequest(8080, 'b', '127.0.0.1', 'GET', '/'), null);
    assert.deepEqual(counted, ['identity']);
    authorizer.close();
  });

  it('a policy delivered again keeps the buckets of a rate limit that did not change', () => {
    // Every policy update (an authorization added, a re-watch after a reconnect) used to build new
    // limiters with full buckets: a client at its limit got a fresh second of requests each time.
    const server = (limit: { totalRps: number; identityRps: number }, authorizations: string[]) => ({
      servers: [
        {
          name: 'shop/web-http',
          port: 8080,
          protocol: 'http1',
          rateLimit: { name: 'shop/limit', overrides: [], ...limit },
          authorizations: authorizations.map((name) => ({
            name,
            identities: [],
            namespaces: [],
            networks: [],
            unauthenticated: true,
            routes: [],
          })),
        },
      ],
    });
    const first = compilePolicy(server({ totalRps: 0, identityRps: 1 }, ['shop/a']));
    assert.equal(first.servers.get(8080)?.rateLimit?.check('x'), null);
    const again = compilePolicy(
      server({ totalRps: 0, identityRps: 1 }, ['shop/a', 'shop/b']),
      undefined,
      first,
    );
    assert.equal(again.servers.get(8080)?.rateLimit?.check('x'), 'identity', 'the bucket was refilled');
    // A changed limit is a new limiter: its buckets start full at the new rate.
    const changed = compilePolicy(server({ totalRps: 0, identityRps: 2 }, ['shop/a']), undefined, again);
    assert.deepEqual(
      [0, 1, 2].map(() => changed.servers.get(8080)?.rateLimit?.check('x')),
      [null, null, 'identity'],
    );
  });
});
