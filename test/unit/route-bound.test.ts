// Which routes a RouteSet carries when they would take more bytes than it may
// (src/control/routes/route-bound.ts), and what the routes left out say in their status
// (status.ts, kubernetes-status.ts): properties of the choice, the size estimate against the real
// encoder, and the sets per namespace and port.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { loadRouteApi } from '../../src/api/load.ts';
import { ROUTE_SET_MAX_MESSAGE_BYTES, ROUTE_SET_ROUTE_BYTES } from '../../src/api/route-set-bound.ts';
import { routeParents } from '../../src/control/routes/kubernetes-status.ts';
import {
  boundRoutes,
  byPrecedence,
  routeKey,
  routeWireBytes,
  unsentRoutes,
} from '../../src/control/routes/route-bound.ts';
import { boundedRouteSet } from '../../src/control/routes/route-set.ts';
import { routeStatus, unresolvedBackends, type ServiceIndex } from '../../src/control/routes/status.ts';
import type { FaultResource } from '../../src/core/routes/fault.ts';
import type { RouteResource } from '../../src/core/routes/schema.ts';
import { routesFor } from '../../src/core/routes/select.ts';

const services: ServiceIndex = new Map([
  [
    'mesh/echo',
    [
      { port: 80, name: 'http' },
      { port: 81, name: 'admin' },
    ],
  ],
  ['mesh/echo-v1', [{ port: 8080 }]],
]);

/** An HTTPRoute whose one match has a path of `fill` more characters (its size), to `backend`. */
function route(
  name: string,
  createdMs: number,
  fill: number,
  options: { namespace?: string; port?: number; backend?: string; fault?: string } = {},
): RouteResource {
  const parentRef = { group: '', kind: 'Service', name: 'echo', namespace: 'mesh', port: options.port };
  return {
    kind: 'HTTPRoute',
    namespace: options.namespace ?? 'mesh',
    name,
    createdMs,
    spec: {
      parentRefs: [parentRef],
      hostnames: [],
      rules: [
        {
          matches: [{ path: { type: 'PathPrefix', value: `/${name}${'x'.repeat(fill)}` } }],
          filters:
            options.fault === undefined
              ? []
              : [
                  {
                    type: 'ExtensionRef',
                    extensionRef: { group: 'traffic.trellis.dev', kind: 'HTTPFault', name: options.fault },
                  },
                ],
          backendRefs: [
            {
              group: '',
              kind: 'Service',
              name: options.backend ?? 'echo-v1',
              namespace: 'mesh',
              port: 8080,
              weight: 1,
              filters: [],
            },
          ],
        },
      ],
    },
  } as unknown as RouteResource;
}

const names = (routes: readonly RouteResource[]) => routes.map((r) => r.name);
const encode = loadRouteApi().Routes.service.Watch.responseSerialize as (m: unknown) => Buffer;
/** A route as route-set.ts sends it. */
const wire = (r: RouteResource) => ({
  kind: r.kind,
  namespace: r.namespace,
  name: r.name,
  createdMs: r.createdMs,
  specJson: JSON.stringify(r.spec),
  annotations: r.annotations ?? {},
});

test('boundRoutes: the routes kept fit, each left out did not fit at its turn, and a newer route never moves an older one', () => {
  const arbitrary = fc.record({
    routes: fc.uniqueArray(
      fc.record({
        name: fc.constantFrom('a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j', 'k', 'l'),
        createdMs: fc.integer({ min: 0, max: 4 }),
        fill: fc.integer({ min: 0, max: 600 }),
        backend: fc.constantFrom('echo-v1', 'gone', 'gone-too'),
      }),
      { selector: (r) => r.name, maxLength: 12 },
    ),
    budget: fc.integer({ min: 100, max: 3000 }),
    seed: fc.integer(),
  });
  fc.assert(
    fc.property(arbitrary, ({ routes, budget, seed }) => {
      const made = routes.map((r) => route(r.name, r.createdMs, r.fill, { backend: r.backend }));
      const sorted = [...made].sort(byPrecedence);
      const { kept, unsent } = boundRoutes(sorted, services, [], budget);
      // Every route is kept or left out, in the order given.
      const decided = sorted.map((r) => (kept.includes(r) ? 'kept' : 'unsent'));
      assert.deepEqual(
        [...kept, ...unsent.map((u) => u.route)].sort(byPrecedence),
        sorted,
        'kept and unsent split the routes',
      );
      // The kept routes fit, as the encoder writes them with the backends they leave unresolved.
      const unresolved = [...new Set(kept.flatMap((r) => unresolvedBackends(r, services)))];
      assert.ok(encode({ routes: kept.map(wire), unresolvedBackends: unresolved }).length <= budget);
      for (const u of unsent) {
        assert.ok(u.keptBytes + u.bytes > budget, `${u.route.name} would have fit`);
        assert.ok(u.keptBytes <= budget);
        assert.ok(u.bytes >= routeWireBytes(u.route));
      }
      // The routes before any point are decided as if no newer route existed.
      for (let k = 0; k <= sorted.length; k++) {
        const prefix = boundRoutes(sorted.slice(0, k), services, [], budget);
        assert.deepEqual(
          sorted.slice(0, k).map((r) => (prefix.kept.includes(r) ? 'kept' : 'unsent')),
          decided.slice(0, k),
        );
      }
      // The order the routes come in does not matter once sorted: the choice is deterministic.
      const shuffled = [...made].sort(
        (a, b) => ((a.name.charCodeAt(0) * seed) % 7) - ((b.name.charCodeAt(0) * seed) % 7),
      );
      assert.deepEqual(
        names(boundRoutes(shuffled.sort(byPrecedence), services, [], budget).kept),
        names(kept),
      );
    }),
    { numRuns: 200 },
  );
});

test('routeWireBytes is never less than what the encoder writes for the route in a RouteSet', () => {
  fc.assert(
    fc.property(
      fc.string({ unit: 'grapheme', maxLength: 300 }),
      fc.dictionary(
        fc.string({ unit: 'grapheme', maxLength: 20 }),
        fc.string({ unit: 'grapheme', maxLength: 200 }),
        {
          maxKeys: 5,
        },
      ),
      fc.integer({ min: -(2 ** 52), max: 2 ** 52 }),
      (fill, annotations, createdMs) => {
        const r = { ...route('r', createdMs, 0), annotations } as RouteResource;
        (r.spec.rules[0]!.matches[0] as { path: { value: string } }).path.value = `/${fill}`;
        assert.ok(routeWireBytes(r) >= encode({ routes: [wire(r)] }).length);
      },
    ),
    { numRuns: 200 },
  );
});

test('unsentRoutes: one set per namespace and port; a route is left out only where it does not fit', () => {
  const budget = 3000;
  const a = route('a', 1, 1500); // both ports (no port in its parentRef)
  const b = route('b', 2, 1500, { port: 80 });
  const c = route('c', 3, 100, { port: 81 });
  const consumer = route('d', 4, 1500, { namespace: 'other', port: 80 });
  const unsent = unsentRoutes([consumer, c, b, a], services, [], budget);
  assert.deepEqual([...unsent.keys()], ['HTTPRoute/mesh/b']);
  assert.deepEqual(
    unsent.get('HTTPRoute/mesh/b')!.map((p) => [p.namespace, p.name, p.port, p.portName]),
    [['mesh', 'echo', 80, 'http']],
  );
  // A route naming a fault counts the fault's bytes once, with the first route that brings it.
  const faults: FaultResource[] = [
    {
      kind: 'HTTPFault',
      namespace: 'mesh',
      name: 'slow',
      spec: { delay: { fixedDelay: '1s', percent: 100 }, padding: 'p'.repeat(1500) } as never,
    },
  ];
  const f1 = route('f1', 1, 100, { fault: 'slow' });
  const f2 = route('f2', 2, 100, { fault: 'slow' });
  const f3 = route('f3', 3, 1000);
  assert.deepEqual(names(boundRoutes([f1, f2, f3], services, faults, budget).kept), ['f1', 'f2']);
  assert.deepEqual(names(boundRoutes([f1, f2, f3], services, [], budget).kept), ['f1', 'f2', 'f3']);
});

test('a route left out says so in Accepted, on one machine and in the status written to Kubernetes', () => {
  // Four routes of ~1 MiB: three fit in the set's 3 MiB with room for nothing more.
  const mib = 1024 * 1024;
  const routes = [0, 1, 2, 3].map((i) => route(`big${i}`, i, mib - 2000));
  const huge = route('huge', 10, ROUTE_SET_ROUTE_BYTES + 512 * 1024); // too large for any set, alone
  const small = route('small', 20, 10); // newer than all: still fits
  const all = [small, huge, ...routes];
  const unsent = unsentRoutes(all, services);
  assert.deepEqual([...unsent.keys()].sort(), ['HTTPRoute/mesh/big3', 'HTTPRoute/mesh/huge']);

  const accepted = (r: RouteResource) => routeStatus(r, services, [], new Map(), unsent)[0]!.conditions[0]!;
  assert.deepEqual(accepted(routes[0]!), {
    type: 'Accepted',
    status: 'True',
    reason: 'Accepted',
    message: 'attached to the Service',
  });
  assert.equal(accepted(small).status, 'True');
  const big3 = accepted(routes[3]!);
  assert.equal(big3.status, 'False');
  assert.equal(big3.reason, 'RouteSetTooLarge');
  assert.equal(
    big3.message,
    'not sent to proxies for ports 80, 81: this route (1022 KiB) with the older routes kept before it (2.99 MiB) takes more than the 3 MiB one route set may carry (the routes of namespace mesh attached to Service mesh/echo, the oldest first)',
  );
  assert.match(
    accepted(huge).message,
    /^not sent to proxies for ports 80, 81: this route alone takes 3.5 MiB than the 3 MiB/,
  );

  // The set sent: the kept routes only, and its encoding within the proxy's receive limit.
  const { set, unsent: left } = boundedRouteSet(
    { routes: all, services, serviceAnnotations: new Map() },
    { clientNamespace: 'mesh', namespace: 'mesh', service: 'echo', port: 80 },
  );
  assert.deepEqual(
    set.routes?.map((r) => r.name),
    ['big0', 'big1', 'big2', 'small'],
  );
  assert.deepEqual(names(left.map((u) => u.route)), ['big3', 'huge']);
  const bytes = encode(set).length;
  assert.ok(bytes <= ROUTE_SET_ROUTE_BYTES && bytes < ROUTE_SET_MAX_MESSAGE_BYTES, `${bytes} bytes`);

  // On Kubernetes: the entry written for the parentRef carries the same condition.
  const [entry] = routeParents(
    { metadata: { generation: 1 } },
    { route: routes[3]!, issues: [] },
    services,
    [],
    new Map(),
    unsent,
  );
  assert.equal(entry!.conditions[0]!.reason, 'RouteSetTooLarge');
  assert.equal(entry!.conditions[0]!.status, 'False');
});

test('what the status says is what is sent: for every client namespace and port, the routes left out of the set are the ones unsentRoutes names', () => {
  const arbitrary = fc.uniqueArray(
    fc.record({
      name: fc.constantFrom('a', 'b', 'c', 'd', 'e', 'f', 'g', 'h'),
      namespace: fc.constantFrom('mesh', 'other'),
      port: fc.constantFrom(undefined, 80, 81),
      createdMs: fc.integer({ min: 0, max: 3 }),
      fill: fc.integer({ min: 0, max: 1500 }),
    }),
    { selector: (r) => `${r.namespace}/${r.name}`, maxLength: 10 },
  );
  fc.assert(
    fc.property(arbitrary, (specs) => {
      const routes = specs.map((s) =>
        route(s.name, s.createdMs, s.fill, { namespace: s.namespace, ...(s.port ? { port: s.port } : {}) }),
      );
      const unsent = unsentRoutes(routes, services, [], 3000);
      for (const clientNamespace of ['mesh', 'other', 'third'])
        for (const port of [80, 81]) {
          const portName = port === 80 ? 'http' : 'admin';
          const applying = routesFor(
            routes,
            { namespace: 'mesh', name: 'echo', port, portName },
            clientNamespace,
          );
          const left = boundRoutes(applying.sort(byPrecedence), services, [], 3000).unsent.map(
            (u) => u.route,
          );
          const said = applying.filter((r) => unsent.get(routeKey(r))?.some((p) => p.port === port));
          assert.deepEqual(names(left).sort(), names(said).sort(), `${clientNamespace} port ${port}`);
        }
    }),
    { numRuns: 200 },
  );
});
