// The Routes API end to end on one machine: routes and Services in a state folder
// (src/control/routes/state-files.ts), the control plane's route component serving
// trellis.route.v1.Routes/Watch (src/control/routes/component.ts), and the proxy's watch client
// (src/proxy/route/watch-client.ts) compiling each RouteSet into the matcher's table: producer
// and consumer routes per client namespace, unresolved backends marked, changes and deletions
// followed live; a set that does not validate is refused and the last good table stays.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { silentLogger } from '../../src/core/log.ts';
import { writeServiceFile } from '../../src/control/discovery/local-state.ts';
import { deleteRouteFile, writeRouteFile } from '../../src/control/routes/state-files.ts';
import { matchRoute, NO_MATCHING_RULE, type RouteTable } from '../../src/core/routes/matcher.ts';
import { compileRouteSet } from '../../src/proxy/route/route-table.ts';
import { watchRoutes } from '../../src/proxy/route/watch-client.ts';
import { request, routesFromYaml } from '../unit/routes-helpers.ts';
import { removeTempDir } from '../helpers/temp-dir.ts';
import { serveRouteFolder } from '../helpers/route-server.ts';

/** The tables a watch delivered, and a way to wait for one that satisfies a check. */
function tableQueue() {
  const tables: RouteTable[] = [];
  let wake: (() => void) | null = null;
  return {
    push(table: RouteTable) {
      tables.push(table);
      wake?.();
    },
    async until(check: (table: RouteTable) => boolean, what: string): Promise<RouteTable> {
      const deadline = Date.now() + 20_000;
      for (;;) {
        const found = tables.find(check);
        if (found) return found;
        if (Date.now() > deadline) throw new Error(`no table where ${what} (got ${tables.length})`);
        await new Promise<void>((resolve) => {
          wake = resolve;
          setTimeout(resolve, 200);
        });
      }
    },
  };
}

const backendOf = (table: RouteTable, path: string) => {
  const m = matchRoute(table, request(path));
  if (m === null) return 'none';
  if (m === NO_MATCHING_RULE) return '404';
  const b = m.rule.backends.backends[0];
  return `${b?.name}${b?.resolved ? '' : ' (unresolved)'}`;
};

const route = (name: string, namespace: string, backend: string, extra = '') =>
  routesFromYaml(`apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: ${name}, namespace: ${namespace} }
spec:
  parentRefs: [{ group: "", kind: Service, name: echo, namespace: mesh, port: 80 }]
  rules:
  - matches: [{ path: { type: PathPrefix, value: /v2 } }]
    backendRefs: [{ name: ${backend}, namespace: mesh, port: 8080 }]
${extra}`)[0]!;

test('Routes.Watch serves each client namespace its routes, live, to the proxy watch client', async (t) => {
  const root = await mkdtemp(join(tmpdir(), 'trellis-route-api-'));
  t.after(() => removeTempDir(root));
  await writeServiceFile(root, 'mesh', 'echo', { ports: [{ port: 80 }] });
  await writeServiceFile(root, 'mesh', 'echo-v1', { ports: [{ port: 8080 }] });
  await writeRouteFile(root, route('producer', 'mesh', 'echo-v1'));

  const { component, port } = await serveRouteFolder(t, root);

  const watch = (clientNamespace: string) => {
    const queue = tableQueue();
    const w = watchRoutes({
      address: `127.0.0.1:${port}`,
      clientNamespace,
      namespace: 'mesh',
      service: 'echo',
      port: 80,
      backoff: { initialMs: 50, maxMs: 200 },
      log: silentLogger,
      onTable: (table) => queue.push(table),
    });
    t.after(() => w.close());
    return { queue, close: () => w.close() };
  };
  const mesh = watch('mesh');
  const consumer = watch('consumer');

  const first = await mesh.queue.until(
    (tb) => backendOf(tb, '/v2/x') === 'echo-v1',
    'the producer route routes /v2',
  );
  assert.equal(backendOf(first, '/other'), '404', 'a request no rule matches gets 404');
  await consumer.queue.until(
    (tb) => backendOf(tb, '/v2') === 'echo-v1',
    'the consumer namespace gets the producer route',
  );

  // A consumer route replaces the producer's, for its namespace only; its missing backend is marked.
  await writeRouteFile(root, route('mine', 'consumer', 'echo-v9'));
  await consumer.queue.until(
    (tb) => backendOf(tb, '/v2') === 'echo-v9 (unresolved)',
    'the consumer route applies',
  );
  // A later change for the producer reaches the mesh namespace's watch.
  await writeRouteFile(
    root,
    route('producer', 'mesh', 'echo-v1', '  - backendRefs: [{ name: echo, port: 80 }]\n'),
  );
  await mesh.queue.until((tb) => backendOf(tb, '/other') === 'echo', 'the changed producer route');

  await deleteRouteFile(root, { kind: 'HTTPRoute', namespace: 'mesh', name: 'producer' });
  await mesh.queue.until((tb) => backendOf(tb, '/v2') === 'none', 'no route applies any more');
  assert.equal(component.openStreams, 2);
  mesh.close();
  consumer.close();
  const deadline = Date.now() + 10_000;
  while (component.openStreams > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  assert.equal(component.openStreams, 0, 'closed watches release their streams');
});

test('a route set that does not validate is refused with the reason (the caller keeps its table)', () => {
  const good = {
    kind: 'HTTPRoute',
    namespace: 'mesh',
    name: 'r',
    createdMs: 0,
    specJson: JSON.stringify({ parentRefs: [{ group: '', kind: 'Service', name: 'echo' }], rules: [] }),
    annotations: {},
  };
  assert.equal(
    compileRouteSet({
      routes: [good],
      unresolvedBackends: [],
      serviceAnnotations: {},
      extensions: [],
    }).ok,
    true,
  );
  const notJson = compileRouteSet({
    routes: [{ ...good, specJson: '{' }],
    unresolvedBackends: [],
    serviceAnnotations: {},
    extensions: [],
  });
  assert.deepEqual(notJson, { ok: false, problem: 'HTTPRoute mesh/r: spec is not JSON' });
  const invalid = compileRouteSet({
    routes: [
      good,
      {
        ...good,
        name: 'bad',
        specJson: JSON.stringify({
          rules: [{ matches: [{ path: { type: 'RegularExpression', value: '(?=x)' } }] }],
        }),
      },
    ],
    unresolvedBackends: [],
    serviceAnnotations: {},
    extensions: [],
  });
  assert.deepEqual(invalid, {
    ok: false,
    problem:
      'HTTPRoute mesh/bad: spec.rules.0.matches.0.path.value: only "(?:" groups are supported: no lookaround, named groups or inline flags',
  });
});
