// Fault injection (src/core/routes/fault.ts): the HTTPFault schema (property-based: never throws,
// every valid spec compiles to chances in [0, 1]; each bad field named), `trellis apply`'s
// errors, the matcher's rules that name a fault, the route level's decisions (abort, delay, the
// delay counted against timeouts.request, percentages drawn), the route status, and the RouteSet
// the control plane sends and the proxy compiles.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { silentLogger } from '../../src/core/log.ts';
import { seededRandom } from '../../src/core/random.ts';
import {
  compileFault,
  FAULT_API_VERSION,
  grpcStatusForHttp,
  httpStatusForGrpc,
  validateFault,
  type FaultResource,
} from '../../src/core/routes/fault.ts';
import { compileRouteTable, type RouteTable } from '../../src/core/routes/matcher.ts';
import { readResources } from '../../src/control/resources.ts';
import { buildRouteSet } from '../../src/control/routes/route-set.ts';
import { routeStatus } from '../../src/control/routes/status.ts';
import { OutboundRoutes, type RouteDecision } from '../../src/proxy/outbound/routes.ts';
import { compileRouteSet } from '../../src/proxy/route/route-table.ts';
import { routesFromYaml } from './routes-helpers.ts';

const fault = (spec: unknown, name = 'f') => ({
  apiVersion: FAULT_API_VERSION,
  kind: 'HTTPFault',
  metadata: { name, namespace: 'shop' },
  spec,
});

function problems(raw: unknown): string[] {
  return validateFault(raw).issues.map((i) => `${i.path.join('.')}: ${i.message}`);
}

function faultOf(spec: unknown, name = 'f'): FaultResource {
  const { fault: f, issues } = validateFault(fault(spec, name));
  if (f === null) throw new Error(JSON.stringify(issues));
  return f;
}

describe('HTTPFault schema', () => {
  it('accepts abort and delay with the defaults filled in', () => {
    const f = faultOf({ abort: { httpStatus: 503 }, delay: { fixedDelay: '250ms', percentage: 12.5 } });
    assert.deepEqual(f.spec, {
      abort: { httpStatus: 503, percentage: 100 },
      delay: { fixedDelay: '250ms', percentage: 12.5 },
    });
    assert.deepEqual(compileFault(f), {
      name: 'shop/f',
      abortChance: 1,
      abortHttpStatus: 503,
      abortGrpcStatus: 14,
      delayChance: 0.125,
      delayMs: 250,
    });
    const g = compileFault(faultOf({ abort: { grpcStatus: 'RESOURCE_EXHAUSTED', percentage: 0 } }));
    assert.equal(g.abortGrpcStatus, 8);
    assert.equal(g.abortHttpStatus, 429);
    assert.equal(g.abortChance, 0);
    assert.equal(g.delayChance, 0);
  });

  it('names each bad field and why', () => {
    assert.deepEqual(problems(fault({})), ['spec: give abort, delay or both']);
    assert.deepEqual(problems(fault({ abort: { httpStatus: 503, grpcStatus: 'UNAVAILABLE' } })), [
      'spec.abort: give httpStatus or grpcStatus (one of them)',
    ]);
    assert.deepEqual(problems(fault({ abort: { percentage: 5 } })), [
      'spec.abort: give httpStatus or grpcStatus (one of them)',
    ]);
    assert.deepEqual(problems(fault({ abort: { httpStatus: 99 } })), [
      'spec.abort.httpStatus: expected an HTTP status 200..599',
    ]);
    assert.deepEqual(problems(fault({ abort: { grpcStatus: 'OK' } })), [
      'spec.abort.grpcStatus: expected a gRPC status name other than OK, such as UNAVAILABLE',
    ]);
    assert.deepEqual(problems(fault({ delay: { fixedDelay: '1s', percentage: 100.5 } })), [
      'spec.delay.percentage: expected a percentage 0..100',
    ]);
    assert.deepEqual(problems(fault({ delay: { fixedDelay: '2h' } })), ['spec.delay.fixedDelay: at most 1h']);
    assert.match(
      problems(fault({ delay: { fixedDelay: '1 s' } }))[0]!,
      /^spec\.delay\.fixedDelay: expected a duration/,
    );
    assert.deepEqual(problems(fault({ abort: { httpStatus: 503, extra: 1 } })), [
      'spec.abort.extra: unknown field',
    ]);
  });

  it('never throws on any input', () => {
    fc.assert(
      fc.property(fc.anything(), (spec) => {
        const { fault: f, issues } = validateFault(fault(spec));
        assert.ok((f === null) !== (issues.length === 0));
      }),
      { numRuns: 500 },
    );
  });

  it('every valid spec compiles to chances in [0, 1], a status in range and a delay at most 1h', () => {
    const pct = fc.option(fc.double({ min: 0, max: 100, noNaN: true }), { nil: undefined });
    const abort = fc.oneof(
      fc.record(
        { httpStatus: fc.integer({ min: 200, max: 599 }), percentage: pct },
        { requiredKeys: ['httpStatus'] },
      ),
      fc.record(
        { grpcStatus: fc.constantFrom('CANCELLED', 'UNAVAILABLE', 'INTERNAL', 'DATA_LOSS'), percentage: pct },
        { requiredKeys: ['grpcStatus'] },
      ),
    );
    const delay = fc.record(
      {
        fixedDelay: fc
          .tuple(fc.integer({ min: 0, max: 3600 }), fc.constantFrom('ms', 's'))
          .map(([n, u]) => `${n}${u}`),
        percentage: pct,
      },
      { requiredKeys: ['fixedDelay'] },
    );
    const spec = fc
      .record({ abort, delay }, { requiredKeys: [] })
      .filter((s) => s.abort !== undefined || s.delay !== undefined);
    fc.assert(
      fc.property(spec, (s) => {
        const c = compileFault(faultOf(JSON.parse(JSON.stringify(s))));
        for (const chance of [c.abortChance, c.delayChance]) assert.ok(chance >= 0 && chance <= 1);
        assert.ok(c.abortHttpStatus >= 200 && c.abortHttpStatus <= 599);
        assert.ok(c.abortGrpcStatus >= 1 && c.abortGrpcStatus <= 16);
        assert.ok(c.delayMs >= 0 && c.delayMs <= 3_600_000);
      }),
      { numRuns: 300 },
    );
  });

  it('maps HTTP and gRPC statuses as the gRPC spec and Envoy do', () => {
    assert.equal(grpcStatusForHttp(503), 14);
    assert.equal(grpcStatusForHttp(404), 12);
    assert.equal(grpcStatusForHttp(418), 2);
    assert.equal(httpStatusForGrpc(14), 503);
    assert.equal(httpStatusForGrpc(4), 504);
    assert.equal(httpStatusForGrpc(15), 500);
  });
});

describe('trellis apply of an HTTPFault', () => {
  it('is accepted, and its errors name the document and the field', () => {
    const good = readResources(
      `apiVersion: ${FAULT_API_VERSION}\nkind: HTTPFault\nmetadata: { name: f, namespace: shop }\nspec:\n  abort: { httpStatus: 503, percentage: 50 }\n`,
      'f.yaml',
    );
    assert.deepEqual(good.problems, []);
    assert.equal(good.resources[0]?.kind, 'HTTPFault');
    const bad = readResources(
      `kind: Service\napiVersion: v1\nmetadata: { name: s }\nspec: { ports: [{ port: 80 }] }\n---\n` +
        `apiVersion: ${FAULT_API_VERSION}\nkind: HTTPFault\nmetadata: { name: f }\nspec:\n  delay: { fixedDelay: 5x }\n`,
      'f.yaml',
    );
    assert.equal(bad.problems.length, 1);
    assert.match(
      bad.problems[0]!,
      /^f\.yaml:10:\d+: document 2: spec\.delay\.fixedDelay: expected a duration/,
    );
  });
});

const ROUTE = `
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: r, namespace: shop }
spec:
  parentRefs: [{ group: "", kind: Service, name: web }]
  rules:
    - matches: [{ path: { type: PathPrefix, value: /abort } }]
      filters: [{ type: ExtensionRef, extensionRef: { group: traffic.trellis.dev, kind: HTTPFault, name: abort } }]
      backendRefs: [{ name: web, port: 80 }]
    - matches: [{ path: { type: PathPrefix, value: /half } }]
      filters: [{ type: ExtensionRef, extensionRef: { group: traffic.trellis.dev, kind: HTTPFault, name: half } }]
      backendRefs: [{ name: web, port: 80 }]
    - matches: [{ path: { type: PathPrefix, value: /delay } }]
      timeouts: { request: 500ms }
      filters: [{ type: ExtensionRef, extensionRef: { group: traffic.trellis.dev, kind: HTTPFault, name: delay } }]
      backendRefs: [{ name: web, port: 80 }]
    - matches: [{ path: { type: PathPrefix, value: /long } }]
      timeouts: { request: 100ms }
      filters: [{ type: ExtensionRef, extensionRef: { group: traffic.trellis.dev, kind: HTTPFault, name: delay } }]
      backendRefs: [{ name: web, port: 80 }]
    - matches: [{ path: { type: PathPrefix, value: /missing } }]
      filters: [{ type: ExtensionRef, extensionRef: { group: traffic.trellis.dev, kind: HTTPFault, name: nosuch } }]
      backendRefs: [{ name: web, port: 80 }]
    - matches: [{ path: { type: PathPrefix, value: /other } }]
      filters: [{ type: ExtensionRef, extensionRef: { group: example.com, kind: Thing, name: abort } }]
      backendRefs: [{ name: web, port: 80 }]
`;

const FAULTS = [
  faultOf({ abort: { httpStatus: 503 } }, 'abort'),
  faultOf({ abort: { grpcStatus: 'UNAVAILABLE', percentage: 50 } }, 'half'),
  faultOf({ delay: { fixedDelay: '200ms' } }, 'delay'),
];

function table(faults = FAULTS): RouteTable {
  const byName = new Map(faults.map((f) => [`${f.namespace}/${f.name}`, compileFault(f)]));
  return compileRouteTable(
    routesFromYaml(ROUTE),
    () => true,
    (ns, name) => byName.get(`${ns}/${name}`) ?? null,
  );
}

function decider(seed = 1): { routes: OutboundRoutes; counted: string[] } {
  const counted: string[] = [];
  const routes = new OutboundRoutes({
    address: '127.0.0.1:1',
    namespace: 'shop',
    waitMs: 10,
    log: silentLogger,
    random: seededRandom(seed),
    startWatch: () => ({ close() {} }),
    onFault: (kind) => counted.push(kind),
  });
  return { routes, counted };
}

const ask = (routes: OutboundRoutes, t: RouteTable, path: string, grpc = false): RouteDecision | null =>
  routes.decide({ host: 'web', port: 80 }, t, {
    method: 'GET',
    pathAndQuery: path,
    headers: {},
    grpc,
    authority: 'web',
  });

describe('route decisions with faults', () => {
  it('abort 100%: answered with the fault status, counted', () => {
    const { routes, counted } = decider();
    const d = ask(routes, table(), '/abort/x');
    assert.equal(d?.kind, 'abort');
    assert.equal(d?.kind === 'abort' && d.status, 503);
    assert.equal(d?.kind === 'abort' && d.grpcStatus, 14);
    assert.deepEqual(counted, ['abort']);
  });

  it('abort 50%: within a statistical tolerance over 4000 requests', () => {
    const { routes } = decider(7);
    const t = table();
    let aborted = 0;
    const n = 4000;
    for (let i = 0; i < n; i++) if (ask(routes, t, '/half')?.kind === 'abort') aborted++;
    // Binomial(4000, 0.5): sd ~ 31.6; 5 sd either side.
    assert.ok(Math.abs(aborted - n / 2) < 160, `aborted ${aborted} of ${n}`);
  });

  it('a delay wraps the forward decision, its time taken off timeouts.request', () => {
    const { routes, counted } = decider();
    const d = ask(routes, table(), '/delay');
    assert.equal(d?.kind, 'delay');
    if (d?.kind !== 'delay') return;
    assert.equal(d.ms, 200);
    assert.equal(d.then.kind, 'forward');
    assert.deepEqual(d.then.kind === 'forward' && d.then.timeouts, { requestMs: 300, attemptMs: null });
    assert.deepEqual(counted, ['delay']);
  });

  it('a delay at least timeouts.request ends in 504 request-timeout once the timeout passes', () => {
    const { routes } = decider();
    const d = ask(routes, table(), '/long');
    assert.equal(d?.kind, 'delay');
    if (d?.kind !== 'delay') return;
    assert.equal(d.ms, 100);
    assert.equal(d.then.kind === 'refuse' && d.then.reason, 'request-timeout');
  });

  it('an ExtensionRef naming no HTTPFault (or another kind) keeps answering 500 route-unsupported', () => {
    const { routes } = decider();
    for (const path of ['/missing', '/other']) {
      const d = ask(routes, table(), path);
      assert.equal(d?.kind === 'refuse' && d.reason, 'route-unsupported');
    }
    // Without the faults known, every fault rule is unsupported.
    assert.equal(ask(routes, table([]), '/abort')?.kind, 'refuse');
  });

  it('percentage 0 never injects', () => {
    const { routes, counted } = decider();
    const t = table([faultOf({ abort: { httpStatus: 500, percentage: 0 } }, 'abort'), ...FAULTS.slice(1)]);
    for (let i = 0; i < 200; i++) assert.equal(ask(routes, t, '/abort')?.kind, 'forward');
    assert.deepEqual(counted, []);
  });
});

describe('the control plane and the proxy', () => {
  const routes = routesFromYaml(ROUTE);
  const services = new Map([['shop/web', [{ port: 80 }]]]);

  it('status: PartiallyInvalid only for an ExtensionRef naming no HTTPFault', () => {
    const only = routesFromYaml(`
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: r, namespace: shop }
spec:
  parentRefs: [{ group: "", kind: Service, name: web }]
  rules:
    - filters: [{ type: ExtensionRef, extensionRef: { group: traffic.trellis.dev, kind: HTTPFault, name: abort } }]
      backendRefs: [{ name: web, port: 80 }]
`)[0]!;
    const conditions = (faults: FaultResource[]) =>
      routeStatus(only, services, faults)[0]!.conditions.map((c) => `${c.type}=${c.status}/${c.reason}`);
    assert.deepEqual(conditions(FAULTS), ['Accepted=True/Accepted', 'ResolvedRefs=True/ResolvedRefs']);
    assert.deepEqual(conditions([]), [
      'Accepted=True/Accepted',
      'ResolvedRefs=True/ResolvedRefs',
      'PartiallyInvalid=True/UnsupportedValue',
    ]);
    assert.match(
      routeStatus(only, services, [])[0]!.conditions[2]!.message,
      /rule 0: ExtensionRef names no HTTPFault abort in namespace shop/,
    );
  });

  it('the RouteSet carries the faults the routes name, and the proxy compiles them into the rules', () => {
    const unused = faultOf({ abort: { httpStatus: 500 } }, 'unused');
    const set = buildRouteSet(
      { routes, services, serviceAnnotations: new Map(), faults: [...FAULTS, unused] },
      { clientNamespace: 'shop', namespace: 'shop', service: 'web', port: 80 },
    );
    assert.deepEqual(
      set.extensions?.map((e) => `${e.kind} ${e.namespace}/${e.name}`),
      ['HTTPFault shop/abort', 'HTTPFault shop/delay', 'HTTPFault shop/half'],
    );
    const compiled = compileRouteSet({
      routes: set.routes!.map((r) => ({ ...r, createdMs: String(r.createdMs) })) as never,
      unresolvedBackends: [],
      serviceAnnotations: {},
      extensions: set.extensions as never,
    });
    assert.equal(compiled.ok, true);
    if (!compiled.ok) return;
    const { routes: r } = decider();
    assert.equal(ask(r, compiled.table, '/abort')?.kind, 'abort');
    assert.equal(ask(r, compiled.table, '/missing')?.kind, 'refuse');
  });

  it('the proxy refuses a set whose fault does not validate, naming it', () => {
    const bad = compileRouteSet({
      routes: [],
      unresolvedBackends: [],
      serviceAnnotations: {},
      extensions: [
        { kind: 'HTTPFault', namespace: 'shop', name: 'f', specJson: '{"abort":{"httpStatus":7}}' },
      ],
    });
    assert.deepEqual(bad, {
      ok: false,
      problem: 'HTTPFault shop/f: spec.abort.httpStatus: expected an HTTP status 200..599',
    });
  });
});
