// XBackendTrafficPolicy (src/core/routes/backend-traffic-policy.ts): the schema (defaults, bad
// input named by field and line through `trellis apply`'s reader, never a throw on any input),
// the mapping onto the retry.trellis.io/budget-* annotations (which the proxy parses back into the
// same budget), the oldest policy winning for a Service, the merge into a Service's route set
// (the policy over the Service's own budget annotations), and the proxy keeping a budget that is
// the Service's only setting (before, a budget without any other traffic setting was dropped and
// the default applied); and `trellis get httproutes` giving a route whose fault exists no
// PartiallyInvalid (before, it was given one: the HTTPFaults were not passed to the status).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import {
  backendPolicyFor,
  budgetAnnotations,
  retryBudgetOf,
  validateBackendPolicy,
  type BackendPolicyResource,
} from '../../src/core/routes/backend-traffic-policy.ts';
import { validateFault } from '../../src/core/routes/fault.ts';
import { parseTrafficAnnotations } from '../../src/core/routes/service-annotations.ts';
import { readResources } from '../../src/control/resources.ts';
import { routeObjects } from '../../src/control/routes/objects.ts';
import { buildRouteSet } from '../../src/control/routes/route-set.ts';
import { compileRouteSet } from '../../src/proxy/route/route-table.ts';
import { routesFromYaml } from './routes-helpers.ts';

const document = (spec: unknown, name = 'p', created?: string) => ({
  apiVersion: 'gateway.networking.x-k8s.io/v1alpha1',
  kind: 'XBackendTrafficPolicy',
  metadata: { name, namespace: 'shop', ...(created === undefined ? {} : { creationTimestamp: created }) },
  spec,
});

const policy = (spec: unknown, name = 'p', created?: string): BackendPolicyResource => {
  const { policy: p, issues } = validateBackendPolicy(document(spec, name, created));
  assert.deepEqual(issues, []);
  return p!;
};

const WEB = [{ group: '', kind: 'Service', name: 'web' }];

describe('XBackendTrafficPolicy schema', () => {
  it('fills in the CRD defaults (20% over 10s, 10 a second)', () => {
    const p = policy({ targetRefs: WEB, retryConstraint: {} });
    assert.deepEqual(p.spec.retryConstraint, {
      budget: { percent: 20, interval: '10s' },
      minRetryRate: { count: 10, interval: '1s' },
    });
    assert.deepEqual(retryBudgetOf(p), { ratio: 0.2, minPerSecond: 10, windowMs: 10_000 });
  });

  it('maps percent, intervals and the rate onto the budget', () => {
    const p = policy({
      targetRefs: WEB,
      retryConstraint: {
        budget: { percent: 35, interval: '30s' },
        minRetryRate: { count: 3, interval: '10s' },
      },
    });
    assert.deepEqual(retryBudgetOf(p), { ratio: 0.35, minPerSecond: 0.3, windowMs: 30_000 });
  });

  it('refuses bad input with the document, line and field', () => {
    const yaml = `apiVersion: gateway.networking.x-k8s.io/v1alpha1
kind: XBackendTrafficPolicy
metadata: { name: web, namespace: shop }
spec:
  targetRefs:
    - { group: apps, kind: Deployment, name: web }
  retryConstraint:
    budget: { percent: 120, interval: 5m }
    minRetryRate: { count: 0 }
  sessionPersistence: { sessionName: s }
---
apiVersion: gateway.networking.x-k8s.io/v1alpha1
kind: XBackendTrafficPolicy
metadata: { name: nothing, namespace: shop }
spec:
  targetRefs: []
`;
    const { resources, problems } = readResources(yaml, 'p.yaml');
    assert.deepEqual(resources, []);
    assert.deepEqual(problems, [
      'p.yaml:6:16: document 1: spec.targetRefs.0.group: expected "" (the core group: only Services can be targeted)',
      'p.yaml:6:28: document 1: spec.targetRefs.0.kind: expected Service (only Services can be targeted)',
      'p.yaml:8:24: document 1: spec.retryConstraint.budget.percent: expected a whole number 0..100',
      'p.yaml:8:39: document 1: spec.retryConstraint.budget.interval: expected 1s..60s (Trellis counts the budget over at most a minute)',
      'p.yaml:9:28: document 1: spec.retryConstraint.minRetryRate.count: expected a whole number 1..1000000',
      'p.yaml:10:23: document 1: spec.sessionPersistence: not supported: Trellis has no session persistence',
      'p.yaml:16:15: document 2: spec.targetRefs: needs at least one target',
    ]);
  });

  it('refuses a policy without retryConstraint, and two targetRefs to one Service', () => {
    assert.deepEqual(validateBackendPolicy(document({ targetRefs: WEB })).issues, [
      { path: ['spec', 'retryConstraint'], message: 'required: Trellis applies only the retry budget' },
    ]);
    assert.deepEqual(
      validateBackendPolicy(document({ targetRefs: [...WEB, ...WEB], retryConstraint: {} })).issues,
      [{ path: ['spec', 'targetRefs'], message: 'two targetRefs name the same Service' }],
    );
  });

  it('never throws, and what it accepts maps onto annotations the proxy reads back as the same budget', () => {
    const anything = fc.anything();
    const nearlyValid = fc.record({
      targetRefs: fc.constant(WEB),
      retryConstraint: fc.record(
        {
          budget: fc.record(
            {
              percent: fc.oneof(fc.integer({ min: -5, max: 105 }), anything),
              interval: fc.constantFrom('1s', '10s', '60s', '61s', '500ms', 'x'),
            },
            { requiredKeys: [] },
          ),
          minRetryRate: fc.record(
            {
              count: fc.integer({ min: 0, max: 2_000_000 }),
              interval: fc.constantFrom('1ms', '1s', '7s', '1h', '2h', '0s'),
            },
            { requiredKeys: [] },
          ),
        },
        { requiredKeys: [] },
      ),
    });
    fc.assert(
      fc.property(fc.oneof(anything, nearlyValid), (spec) => {
        const { policy: p, issues } = validateBackendPolicy(document(spec));
        if (p === null) {
          assert.ok(issues.length > 0);
          return;
        }
        const budget = retryBudgetOf(p);
        const read = parseTrafficAnnotations(budgetAnnotations(budget));
        assert.deepEqual(read.issues, []);
        assert.deepEqual(read.policy.budget, budget);
      }),
      { numRuns: 500 },
    );
  });
});

describe('XBackendTrafficPolicy on a Service', () => {
  const older = policy(
    { targetRefs: WEB, retryConstraint: { budget: { percent: 5 } } },
    'b-older',
    '2026-01-01T00:00:00Z',
  );
  const newer = policy(
    { targetRefs: WEB, retryConstraint: { budget: { percent: 50 } } },
    'a-newer',
    '2026-02-01T00:00:00Z',
  );

  it('the oldest policy that targets a Service wins (then by name)', () => {
    assert.equal(backendPolicyFor([newer, older], 'shop', 'web')?.name, 'b-older');
    assert.equal(backendPolicyFor([newer, older], 'shop', 'other'), null);
    assert.equal(backendPolicyFor([newer, older], 'elsewhere', 'web'), null);
    const twin = { ...older, name: 'a-twin' };
    assert.equal(backendPolicyFor([older, twin], 'shop', 'web')?.name, 'a-twin');
  });

  const routes = routesFromYaml(`apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: r, namespace: shop }
spec:
  parentRefs: [{ group: "", kind: Service, name: web, port: 80 }]
  rules: [{ backendRefs: [{ name: web, port: 80 }], retry: { codes: [503], attempts: 2 } }]
`);
  const services = new Map([['shop/web', [{ port: 80 }]]]);
  const target = { clientNamespace: 'shop', namespace: 'shop', service: 'web', port: 80 };

  it("the route set carries the policy's budget over the Service's budget annotations, keeping the others", () => {
    const serviceAnnotations = new Map([
      [
        'shop/web',
        { 'retry.trellis.io/budget-ratio': '0.9', 'balancer.trellis.io/failure-accrual': 'consecutive' },
      ],
    ]);
    const set = buildRouteSet(
      { routes, services, serviceAnnotations, backendPolicies: [newer, older] },
      target,
    );
    assert.deepEqual(set.serviceAnnotations, {
      'retry.trellis.io/budget-ratio': '0.05',
      'retry.trellis.io/budget-min-per-second': '10',
      'retry.trellis.io/budget-ttl': '10000ms',
      'balancer.trellis.io/failure-accrual': 'consecutive',
    });
    const alone = buildRouteSet({ routes, services, serviceAnnotations }, target);
    assert.deepEqual(alone.serviceAnnotations, serviceAnnotations.get('shop/web'));
  });

  it("a route's own budget annotations give way to the policy too (its other annotations stay)", () => {
    const [annotated] = routesFromYaml(`apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: r
  namespace: shop
  annotations: { retry.trellis.io/budget-ratio: '0.9', retry.trellis.io/limit: '2', retry.trellis.io/http: '503' }
spec:
  parentRefs: [{ group: "", kind: Service, name: web, port: 80 }]
  rules: [{ backendRefs: [{ name: web, port: 80 }] }]
`);
    const snapshot = { routes: [annotated!], services, serviceAnnotations: new Map() };
    const withPolicy = buildRouteSet({ ...snapshot, backendPolicies: [older] }, target);
    assert.deepEqual(withPolicy.routes?.[0]?.annotations, {
      'retry.trellis.io/limit': '2',
      'retry.trellis.io/http': '503',
    });
    assert.equal(
      buildRouteSet(snapshot, target).routes?.[0]?.annotations?.['retry.trellis.io/budget-ratio'],
      '0.9',
    );
  });

  it('the proxy keeps a budget that is the only traffic setting of a Service with routes', () => {
    const set = buildRouteSet(
      { routes, services, serviceAnnotations: new Map(), backendPolicies: [older] },
      target,
    );
    const compiled = compileRouteSet({
      routes: set.routes!.map((r) => ({ ...r, createdMs: String(r.createdMs) })) as never,
      unresolvedBackends: [],
      serviceAnnotations: set.serviceAnnotations as Record<string, string>,
      extensions: [],
    });
    assert.equal(compiled.ok, true);
    if (!compiled.ok) return;
    assert.deepEqual(compiled.table.policy?.budget, { ratio: 0.05, minPerSecond: 10, windowMs: 10_000 });
  });
});

describe('trellis get httproutes (routeObjects)', () => {
  it('a rule whose ExtensionRef names an existing HTTPFault is not PartiallyInvalid (before: every such route was)', () => {
    const [route] = routesFromYaml(`apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: r, namespace: shop }
spec:
  parentRefs: [{ group: "", kind: Service, name: web, port: 80 }]
  rules:
  - filters: [{ type: ExtensionRef, extensionRef: { group: traffic.trellis.dev, kind: HTTPFault, name: flaky } }]
    backendRefs: [{ name: web, port: 80 }]
`);
    const { fault } = validateFault({
      apiVersion: 'traffic.trellis.dev/v1alpha1',
      kind: 'HTTPFault',
      metadata: { name: 'flaky', namespace: 'shop' },
      spec: { abort: { httpStatus: 503 } },
    });
    const snapshot = {
      routes: [route!],
      services: new Map([['shop/web', [{ port: 80 }]]]),
      serviceAnnotations: new Map(),
      faults: [fault!],
    };
    const conditions = (s: typeof snapshot) =>
      (
        routeObjects(s, {})[0] as { status: { parents: { conditions: { type: string }[] }[] } }
      ).status.parents[0]!.conditions.map((c) => c.type);
    assert.deepEqual(conditions(snapshot), ['Accepted', 'ResolvedRefs']);
    assert.deepEqual(conditions({ ...snapshot, faults: [] }), [
      'Accepted',
      'ResolvedRefs',
      'PartiallyInvalid',
    ]);
  });
});
