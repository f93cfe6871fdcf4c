// The OpenAPI schemas of the CRDs of HTTPFault, HTTPLocalRateLimitPolicy (deploy/crds.yaml) and
// XBackendTrafficPolicy (deploy/gateway-api-crds.yaml) against the schemas `trellis apply` uses:
// every spec the control plane accepts passes the CRD (kubectl never refuses what Trellis would
// apply), and the usual mistakes are refused by both (the CRD catches them at `kubectl apply`
// time already). The CRD schemas are checked by a small validator of the OpenAPI subset they use
// (type, enum, minimum, maximum, minLength, maxLength, pattern, required, minItems, maxItems,
// properties, anyOf/oneOf of required lists).
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { parseAllDocuments } from 'yaml';
import { validateBackendPolicy } from '../../src/core/routes/backend-traffic-policy.ts';
import { validateFault } from '../../src/core/routes/fault.ts';
import { readResources } from '../../src/control/resources.ts';

type Schema = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

function specSchema(file: string, name: string): Schema {
  const text = readFileSync(new URL(`../../deploy/${file}`, import.meta.url), 'utf8');
  const crd = parseAllDocuments(text)
    .map((d) => d.toJS() as Schema)
    .find((c) => c['metadata']['name'] === name);
  assert.ok(crd !== undefined, name);
  return crd['spec']['versions'][0]['schema']['openAPIV3Schema']['properties']['spec'];
}

/** The first problem of `value` against `schema` (the OpenAPI subset the CRDs use), or null. */
function problem(schema: Schema, value: unknown, at = 'spec'): string | null {
  const type = schema['type'];
  if (type === 'object' && (typeof value !== 'object' || value === null || Array.isArray(value)))
    return `${at}: not an object`;
  if (type === 'array' && !Array.isArray(value)) return `${at}: not an array`;
  if (type === 'string' && typeof value !== 'string') return `${at}: not a string`;
  if (type === 'integer' && !Number.isInteger(value)) return `${at}: not an integer`;
  if (type === 'number' && typeof value !== 'number') return `${at}: not a number`;
  if (type === 'boolean' && typeof value !== 'boolean') return `${at}: not a boolean`;
  if (schema['enum'] !== undefined && !schema['enum'].includes(value)) return `${at}: not in enum`;
  if (typeof value === 'number') {
    if (schema['minimum'] !== undefined && value < schema['minimum']) return `${at}: below minimum`;
    if (schema['maximum'] !== undefined && value > schema['maximum']) return `${at}: above maximum`;
  }
  if (typeof value === 'string') {
    if (schema['minLength'] !== undefined && value.length < schema['minLength']) return `${at}: too short`;
    if (schema['maxLength'] !== undefined && value.length > schema['maxLength']) return `${at}: too long`;
    if (schema['pattern'] !== undefined && !new RegExp(schema['pattern'], 'u').test(value))
      return `${at}: no pattern match`;
  }
  if (Array.isArray(value)) {
    if (schema['minItems'] !== undefined && value.length < schema['minItems']) return `${at}: too few`;
    if (schema['maxItems'] !== undefined && value.length > schema['maxItems']) return `${at}: too many`;
    for (const [i, item] of value.entries()) {
      const p = schema['items'] === undefined ? null : problem(schema['items'], item, `${at}.${i}`);
      if (p !== null) return p;
    }
  }
  if (type === 'object') {
    const object = value as Record<string, unknown>;
    const has = (fields: string[]) => fields.every((f) => object[f] !== undefined);
    for (const field of schema['required'] ?? [])
      if (object[field] === undefined) return `${at}.${field}: required`;
    if (schema['anyOf'] !== undefined && !schema['anyOf'].some((s: Schema) => has(s['required'])))
      return `${at}: anyOf`;
    if (
      schema['oneOf'] !== undefined &&
      schema['oneOf'].filter((s: Schema) => has(s['required'])).length !== 1
    )
      return `${at}: oneOf`;
    for (const [field, sub] of Object.entries((schema['properties'] ?? {}) as Record<string, Schema>)) {
      if (object[field] === undefined) continue;
      const p = problem(sub, object[field], `${at}.${field}`);
      if (p !== null) return p;
    }
  }
  return null;
}

/** Mostly `valid`, sometimes `noisy`. */
const mostly = <T>(valid: fc.Arbitrary<T>, noisy: fc.Arbitrary<T>): fc.Arbitrary<T> =>
  fc.oneof({ arbitrary: valid, weight: 6 }, { arbitrary: noisy, weight: 1 });

const near = {
  percentage: fc.oneof(fc.integer({ min: -10, max: 110 }), fc.double({ min: -1, max: 101, noNaN: true })),
  duration: fc.constantFrom('1s', '250ms', '1h', '61m', '1h30m', '0s', '1.5s', 'x', '', '100000s'),
  rps: fc.oneof(fc.integer({ min: -1, max: 1_000_001 }), fc.constant(2.5)),
};

const faultSpec = fc.record(
  {
    abort: fc.record(
      {
        httpStatus: fc.integer({ min: 100, max: 700 }),
        grpcStatus: fc.constantFrom('UNAVAILABLE', 'OK', 'INTERNAL', 'unavailable'),
        percentage: near.percentage,
      },
      { requiredKeys: [] },
    ),
    delay: fc.record({ fixedDelay: near.duration, percentage: near.percentage }, { requiredKeys: [] }),
  },
  { requiredKeys: [] },
);

const ID = 'spiffe://cluster.local/ns/shop/sa/';
const rateLimitSpec = fc.record(
  {
    targetRef: fc.record({
      group: mostly(fc.constant('policy.trellis.dev'), fc.constant('other')),
      kind: mostly(fc.constant('Server'), fc.constant('Service')),
      name: mostly(fc.constant('web'), fc.constantFrom('Web', 'w-1')),
    }),
    total: fc.record({ requestsPerSecond: mostly(fc.integer({ min: 500, max: 1_000_000 }), near.rps) }),
    identity: fc.record({ requestsPerSecond: mostly(fc.integer({ min: 1, max: 500 }), near.rps) }),
    overrides: fc.array(
      fc.record({
        requestsPerSecond: mostly(fc.integer({ min: 1, max: 500 }), near.rps),
        identities: fc.uniqueArray(
          mostly(fc.constantFrom(`${ID}a`, `${ID}b`, `${ID}c`), fc.constantFrom('spiffe://x', `${ID}*`)),
          { minLength: 1, maxLength: 3 },
        ),
      }),
      { maxLength: 1 },
    ),
  },
  { requiredKeys: ['targetRef'] },
);

const budgetSpec = fc.record(
  {
    targetRefs: fc.uniqueArray(
      fc.record({
        group: mostly(fc.constant(''), fc.constant('apps')),
        kind: mostly(fc.constant('Service'), fc.constant('Pod')),
        name: fc.constantFrom('web', 'api', 'db'),
      }),
      { minLength: 1, maxLength: 3, selector: (r) => r.name },
    ),
    retryConstraint: fc.record(
      {
        budget: fc.record(
          {
            percent: mostly(fc.integer({ min: 0, max: 100 }), fc.integer({ min: -5, max: 105 })),
            interval: mostly(fc.constantFrom('1s', '10s', '60s', '1m'), near.duration),
          },
          { requiredKeys: [] },
        ),
        minRetryRate: fc.record(
          {
            count: mostly(fc.integer({ min: 1, max: 1_000_000 }), fc.integer({ min: -1, max: 1_000_001 })),
            interval: mostly(fc.constantFrom('1s', '250ms', '1h'), near.duration),
          },
          { requiredKeys: [] },
        ),
      },
      { requiredKeys: [] },
    ),
  },
  { requiredKeys: ['targetRefs', 'retryConstraint'] },
);

const rateLimitAccepted = (spec: unknown): boolean =>
  readResources(
    JSON.stringify({
      apiVersion: 'policy.trellis.dev/v1alpha1',
      kind: 'HTTPLocalRateLimitPolicy',
      metadata: { name: 'l', namespace: 'shop' },
      spec,
    }),
    'l.yaml',
  ).problems.length === 0;

describe('the CRDs accept what Trellis applies, and refuse the usual mistakes', () => {
  const cases = [
    {
      kind: 'HTTPFault',
      schema: specSchema('crds.yaml', 'httpfaults.traffic.trellis.dev'),
      spec: faultSpec,
      accepted: (spec: unknown) =>
        validateFault({
          apiVersion: 'traffic.trellis.dev/v1alpha1',
          kind: 'HTTPFault',
          metadata: { name: 'f', namespace: 'shop' },
          spec,
        }).fault !== null,
    },
    {
      kind: 'HTTPLocalRateLimitPolicy',
      schema: specSchema('crds.yaml', 'httplocalratelimitpolicies.policy.trellis.dev'),
      spec: rateLimitSpec,
      accepted: rateLimitAccepted,
    },
    {
      kind: 'XBackendTrafficPolicy',
      schema: specSchema('gateway-api-crds.yaml', 'xbackendtrafficpolicies.gateway.networking.x-k8s.io'),
      spec: budgetSpec,
      accepted: (spec: unknown) =>
        validateBackendPolicy({
          apiVersion: 'gateway.networking.x-k8s.io/v1alpha1',
          kind: 'XBackendTrafficPolicy',
          metadata: { name: 'p', namespace: 'shop' },
          spec,
        }).policy !== null,
    },
  ];
  for (const { kind, schema, spec, accepted } of cases)
    it(`${kind}: every spec Trellis accepts passes the CRD schema`, () => {
      let both = 0;
      fc.assert(
        fc.property(spec, (s) => {
          if (!accepted(s)) return;
          both++;
          assert.equal(problem(schema, s), null, JSON.stringify(s));
        }),
        { numRuns: 1000 },
      );
      assert.ok(both > 20, `only ${both} accepted specs were generated`);
    });

  it('the usual mistakes are refused by the CRD schemas too', () => {
    const fault = specSchema('crds.yaml', 'httpfaults.traffic.trellis.dev');
    assert.match(problem(fault, {}) ?? '', /anyOf/);
    assert.match(problem(fault, { abort: { httpStatus: 700 } }) ?? '', /above maximum/);
    assert.match(problem(fault, { abort: { httpStatus: 503, grpcStatus: 'UNAVAILABLE' } }) ?? '', /oneOf/);
    assert.match(problem(fault, { abort: { grpcStatus: 'OK' } }) ?? '', /not in enum/);
    assert.match(problem(fault, { delay: { fixedDelay: '1.5s' } }) ?? '', /pattern/);
    assert.match(problem(fault, { delay: { fixedDelay: '1s', percentage: 101 } }) ?? '', /above maximum/);
    const limits = specSchema('crds.yaml', 'httplocalratelimitpolicies.policy.trellis.dev');
    const target = { group: 'policy.trellis.dev', kind: 'Server', name: 'web' };
    assert.match(problem(limits, { targetRef: target }) ?? '', /anyOf/);
    assert.match(
      problem(limits, { targetRef: { ...target, kind: 'Service' }, total: { requestsPerSecond: 1 } }) ?? '',
      /enum/,
    );
    assert.match(
      problem(limits, { targetRef: target, total: { requestsPerSecond: 0 } }) ?? '',
      /below minimum/,
    );
    assert.match(
      problem(limits, { targetRef: target, overrides: [{ requestsPerSecond: 1, identities: ['alice'] }] }) ??
        '',
      /pattern/,
    );
    const budget = specSchema('gateway-api-crds.yaml', 'xbackendtrafficpolicies.gateway.networking.x-k8s.io');
    assert.match(problem(budget, { targetRefs: [] }) ?? '', /too few/);
    assert.match(
      problem(budget, {
        targetRefs: [{ group: '', kind: 'Service', name: 'web' }],
        retryConstraint: { budget: { percent: 101 } },
      }) ?? '',
      /above maximum/,
    );
  });
});
