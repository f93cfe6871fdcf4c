// A route set too large for one message, end to end on one machine: HTTPRoutes of ~700 KB each in
// a state folder, more of them attached to one Service port than the control plane sends in one
// RouteSet (src/api/route-set-bound.ts), served by the real route component to the proxy's real
// watch client on loopback. Before the bound, the set went out whole, the watch failed with
// RESOURCE_EXHAUSTED at grpc-js's 4 MiB default and retried forever without a single table. Now
// the oldest routes that fit are sent (the table has them), and the routes left out say so in
// their status: Accepted=False, reason RouteSetTooLarge, in `trellis routes` and `trellis get`.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { loadRouteApi } from '../../src/api/load.ts';
import { ROUTE_SET_MAX_MESSAGE_BYTES } from '../../src/api/route-set-bound.ts';
import { createLogger } from '../../src/core/log.ts';
import { writeServiceFile } from '../../src/control/discovery/local-state.ts';
import { routeObjects } from '../../src/control/routes/objects.ts';
import { writeRouteFile } from '../../src/control/routes/state-files.ts';
import { serviceRoutesView } from '../../src/control/routes/view.ts';
import { matchRoute, NO_MATCHING_RULE, type RouteTable } from '../../src/core/routes/matcher.ts';
import { watchRoutes } from '../../src/proxy/route/watch-client.ts';
import { request, routesFromYaml } from '../unit/routes-helpers.ts';
import { removeTempDir } from '../helpers/temp-dir.ts';
import { bindLoopback, serveRouteFolder } from '../helpers/route-server.ts';

/** An HTTPRoute of `name` created at `createdMs`: /NAME goes to echo-v1; with `bulky`, ~700 KB of header matches. */
function route(name: string, createdMs: number, bulky: boolean) {
  const value = 'x'.repeat(1000);
  const headers = Array.from({ length: 11 }, (_, i) => `{ name: h${i}, value: ${value} }`).join(', ');
  const matches = Array.from(
    { length: 64 },
    (_, i) => `{ path: { type: PathPrefix, value: /m${i} }, headers: [${headers}] }`,
  );
  const bulk = bulky
    ? `  - matches: [${matches.join(', ')}]\n    backendRefs: [{ name: echo-v1, port: 8080 }]\n`
    : '';
  return routesFromYaml(
    `apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: ${name}, namespace: mesh }
spec:
  parentRefs: [{ group: "", kind: Service, name: echo, port: 80 }]
  rules:
  - matches: [{ path: { type: PathPrefix, value: /${name} } }]
    backendRefs: [{ name: echo-v1, port: 8080 }]
${bulk}`,
    createdMs,
  )[0]!;
}

const backendOf = (table: RouteTable, path: string) => {
  const m = matchRoute(table, request(path));
  if (m === null) return 'none';
  if (m === NO_MATCHING_RULE) return '404';
  return m.rule.backends.backends[0]?.name ?? '-';
};

/** What a proxy's watch of Service mesh/echo port 80, for a client in mesh, at the Routes API on `port` is; its warnings go to `lines`. */
function echoWatch(port: number, lines: string[]) {
  return {
    address: `127.0.0.1:${port}`,
    clientNamespace: 'mesh',
    namespace: 'mesh',
    service: 'echo',
    port: 80,
    log: createLogger({ level: 'warn', rateLimit: null, write: (line) => lines.push(line) }),
  };
}

test('a route set over the bound: the proxy gets the oldest routes that fit, the others are marked', async (t) => {
  const root = await mkdtemp(join(tmpdir(), 'trellis-route-bound-'));
  t.after(() => removeTempDir(root));
  await writeServiceFile(root, 'mesh', 'echo', { ports: [{ port: 80 }] });
  await writeServiceFile(root, 'mesh', 'echo-v1', { ports: [{ port: 8080 }] });
  // Six bulky routes (~4.2 MB together, over grpc-js's 4 MiB), then a small one, newest of all.
  const names = ['r0', 'r1', 'r2', 'r3', 'r4', 'r5'];
  for (const [i, name] of names.entries()) await writeRouteFile(root, route(name, 1000 * (i + 1), true));
  await writeRouteFile(root, route('small', 10_000, false));

  const { source, port } = await serveRouteFolder(t, root);

  const ends: string[] = [];
  const table = await new Promise<RouteTable>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`no route table in 6 s; the watch ended ${ends.length} times: ${ends[0]}`)),
      6000,
    );
    const w = watchRoutes({
      ...echoWatch(port, ends),
      backoff: { initialMs: 50, maxMs: 200 },
      onTable: (tb) => {
        clearTimeout(timer);
        resolve(tb);
      },
    });
    t.after(() => {
      clearTimeout(timer);
      w.close();
    });
  });
  // 3 MiB of routes per set: the four oldest bulky routes fit, the next two do not, the small
  // newest one still does (an older route never loses its place to a newer one).
  for (const name of ['r0', 'r1', 'r2', 'r3', 'small'])
    assert.equal(backendOf(table, `/${name}`), 'echo-v1', `${name} is sent`);
  for (const name of ['r4', 'r5']) assert.equal(backendOf(table, `/${name}`), '404', `${name} is left out`);
  assert.deepEqual(ends, [], 'the watch never failed');

  // The routes left out say why, in `trellis get` (GET /api/routes) and in `trellis routes`.
  const snapshot = source.snapshot();
  const accepted = new Map(
    routeObjects(snapshot, { namespace: 'mesh' }).map((o) => {
      const parents = (
        o.status as {
          parents: { conditions: { type: string; status: string; reason: string; message: string }[] }[];
        }
      ).parents;
      const c = parents[0]!.conditions.find((x) => x.type === 'Accepted')!;
      return [(o.metadata as { name: string }).name, c];
    }),
  );
  for (const name of ['r0', 'r1', 'r2', 'r3', 'small'])
    assert.equal(accepted.get(name)?.status, 'True', name);
  for (const name of ['r4', 'r5']) {
    assert.equal(accepted.get(name)?.status, 'False', name);
    assert.equal(accepted.get(name)?.reason, 'RouteSetTooLarge', name);
    assert.match(accepted.get(name)!.message, /not sent to proxies for port 80: .*3 MiB/);
  }
  const view = serviceRoutesView(snapshot.routes, snapshot.services, 'mesh', 'echo', snapshot.faults);
  const r4 = view.routes.find((r) => r.name === 'r4')!;
  assert.equal(r4.parents[0]!.conditions[0]!.reason, 'RouteSetTooLarge');
});

test('a RouteSet over the receive limit: the proxy keeps its last routes and says why once', async (t) => {
  const good = {
    routes: [
      {
        kind: 'HTTPRoute',
        namespace: 'mesh',
        name: 'r',
        createdMs: 0,
        specJson: JSON.stringify(route('r', 0, false).spec),
        annotations: {},
      },
    ],
    unresolvedBackends: [],
    serviceAnnotations: {},
    extensions: [],
  };
  // One byte of spec past the limit: gRPC refuses the message before it is decoded.
  const huge = {
    ...good,
    routes: [{ ...good.routes[0]!, specJson: 'x'.repeat(ROUTE_SET_MAX_MESSAGE_BYTES) }],
  };
  let calls = 0;
  const server = new grpc.Server();
  server.addService(loadRouteApi().Routes.service, {
    Watch: (call: grpc.ServerWritableStream<unknown, unknown>) => {
      if (calls++ === 0) call.write(good);
      call.write(huge);
    },
  });
  const port = await bindLoopback(server);
  t.after(() => server.forceShutdown());

  const lines: string[] = [];
  const tables: RouteTable[] = [];
  const ends: string[] = [];
  await new Promise<void>((resolve) => {
    const w = watchRoutes({
      ...echoWatch(port, lines),
      backoff: { initialMs: 20, maxMs: 40 },
      onTable: (tb) => tables.push(tb),
      onEnd: () => {
        ends.push('end');
        if (ends.length === 4) resolve();
      },
    });
    t.after(() => w.close());
  });
  assert.equal(tables.length, 1, 'only the good set became a table');
  assert.equal(backendOf(tables[0]!, '/r'), 'echo-v1');
  assert.equal(lines.length, 1, `one warning for four failures: ${lines.join('\n')}`);
  assert.match(lines[0]!, /route watch ended; keeping the last routes and retrying/);
  assert.match(lines[0]!, /RESOURCE_EXHAUSTED/);
});
