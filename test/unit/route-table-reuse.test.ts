// compileRouteSet (src/proxy/route/route-table.ts) on a set sent again: a route whose input did
// not change is not parsed and validated again, and its patterns are not compiled again (however
// many the set holds); a route that changed is validated anew, and refused when it is now invalid.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { ApiRouteSetOutput } from '../../src/api/client.ts';
import { compileRouteSet, type ValidatedRoutes } from '../../src/proxy/route/route-table.ts';
import { matchRoute, NO_MATCHING_RULE } from '../../src/core/routes/matcher.ts';

/** An HTTPRoute on web:80 whose rules match `paths` as regular expressions. */
function route(name: string, paths: readonly string[], createdMs = 1) {
  const spec = {
    parentRefs: [{ group: '', kind: 'Service', name: 'web', port: 80 }],
    // At most 64 matches per rule: 60 to a rule.
    rules: Array.from({ length: Math.ceil(paths.length / 60) }, (_, r) => ({
      matches: paths
        .slice(60 * r, 60 * r + 60)
        .map((value) => ({ path: { type: 'RegularExpression', value } })),
      backendRefs: [{ name: 'web', port: 80 }],
    })),
  };
  return {
    kind: 'HTTPRoute',
    namespace: 'shop',
    name,
    createdMs: String(createdMs),
    specJson: JSON.stringify(spec),
    annotations: {},
  };
}

/** One watch's sets, compiled as watch-client.ts does: each with what the last good one validated. */
function watch() {
  let validated: ValidatedRoutes = new Map();
  return (routes: ReturnType<typeof route>[]) => {
    const set = { routes, unresolvedBackends: [], serviceAnnotations: {}, extensions: [] };
    const compiled = compileRouteSet(set as unknown as ApiRouteSetOutput, validated);
    if (compiled.ok) validated = compiled.validated;
    return compiled;
  };
}
type Compiled = ReturnType<ReturnType<typeof watch>>;

function patterns(compiled: Compiled): Map<string, RegExp> {
  assert.ok(compiled.ok, compiled.ok ? '' : compiled.problem);
  return new Map(compiled.table.http!.map((c) => [c.pathRegex!.source, c.pathRegex!]));
}

test('a route set sent again keeps the compiled patterns of the routes that did not change', () => {
  const compile = watch();
  // 3 routes of 120 patterns each: more than the 256 patterns compileFullMatch keeps by itself.
  const paths = (r: number) => Array.from({ length: 120 }, (_, i) => `/r${r}/p${i}/[0-9]+`);
  const routes = [route('a', paths(0)), route('b', paths(1)), route('c', paths(2))];
  const first = patterns(compile(routes));
  assert.equal(first.size, 360);

  // "b" changes (one more pattern); "a" and "c" are sent as they were.
  const changed = [routes[0]!, route('b', [...paths(1), '/r1/new/[a-z]+']), routes[2]!];
  const second = patterns(compile(changed));
  assert.equal(second.size, 361);
  let same = 0;
  for (const [source, regex] of second) if (first.get(source) === regex) same++;
  assert.ok(same >= 240, `the 240 patterns of a and c were compiled again (${same} kept)`);

  // The tables still route: a path of c, of the new pattern of b, and none.
  const table = compile(changed);
  assert.ok(table.ok);
  const at = (path: string) =>
    matchRoute(table.table, { path, method: 'GET', headers: {} as never, query: '', grpc: false });
  const routeOf = (path: string) => {
    const m = at(path);
    return m === null || m === NO_MATCHING_RULE ? null : m.rule.route.name;
  };
  assert.equal(routeOf('/r2/p7/42'), 'c');
  assert.equal(routeOf('/r1/new/abc'), 'b');
  assert.equal(at('/r1/new/123'), NO_MATCHING_RULE);
});

test('a route whose spec, creation time or annotations changed is validated anew', () => {
  const compile = watch();
  const good = route('d', ['/ok/[0-9]+']);
  assert.ok(compile([good]).ok);
  // The same name, now with a pattern that is refused: the set is refused, naming it.
  const bad = route('d', ['/bad/(a)\\1']);
  const refused = compile([bad]);
  assert.equal(refused.ok, false);
  assert.match(refused.ok ? '' : refused.problem, /HTTPRoute shop\/d: /);
  // Back to the good spec: accepted again.
  assert.ok(compile([good]).ok);
  // Only the creation time differs: validated again, and still accepted.
  assert.ok(compile([route('d', ['/ok/[0-9]+'], 2)]).ok);
});

test('what a watch keeps is the routes of its last good set: a route removed is not kept', () => {
  const compile = watch();
  const first = compile([route('e', ['/e/[0-9]+']), route('f', ['/f/[0-9]+'])]);
  assert.ok(first.ok);
  assert.deepEqual([...first.validated.keys()].sort(), ['HTTPRoute shop/e', 'HTTPRoute shop/f']);
  const second = compile([route('f', ['/f/[0-9]+'])]);
  assert.ok(second.ok);
  assert.deepEqual([...second.validated.keys()], ['HTTPRoute shop/f']);
  assert.equal(second.validated.get('HTTPRoute shop/f'), first.validated.get('HTTPRoute shop/f'));
});
