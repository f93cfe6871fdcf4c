// Route filters and paths (src/core/routes/filters.ts, path.ts, backends.ts): the spec's
// ReplacePrefixMatch table, the conformance cases of MeshHTTPRouteRewritePath,
// MeshHTTPRouteRedirect{Path,Port,Scheme,HostAndStatus} and MeshHTTPRouteRequestHeaderModifier,
// and properties of header modifiers, prefix rewrites and the weighted pick.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { modifyHeaders, modifyPath, redirectResponse, splitHost } from '../../src/core/routes/filters.ts';
import { replacePrefix, underPrefix, normalizePrefix } from '../../src/core/routes/path.ts';
import { compileBackends, pickBackend, type CompiledBackend } from '../../src/core/routes/backends.ts';
import { seededRandom } from '../../src/core/random.ts';
import type { Redirect } from '../../src/core/routes/schema-filters.ts';

test('ReplacePrefixMatch: the table of httproute_types.go, row by row', () => {
  const rows: [string, string, string, string][] = [
    ['/foo/bar', '/foo', '/xyz', '/xyz/bar'],
    ['/foo/bar', '/foo', '/xyz/', '/xyz/bar'],
    ['/foo/bar', '/foo/', '/xyz', '/xyz/bar'],
    ['/foo/bar', '/foo/', '/xyz/', '/xyz/bar'],
    ['/foo', '/foo', '/xyz', '/xyz'],
    ['/foo/', '/foo', '/xyz', '/xyz/'],
    ['/foo/bar', '/foo', '', '/bar'],
    ['/foo/', '/foo', '', '/'],
    ['/foo', '/foo', '', '/'],
    ['/foo/', '/foo', '/', '/'],
    ['/foo', '/foo', '/', '/'],
  ];
  for (const [path, prefix, replacement, want] of rows)
    assert.equal(replacePrefix(path, prefix, replacement), want, `${path} ${prefix} ${replacement}`);
});

test('conformance MeshHTTPRouteRewritePath: prefix and full-path rewrites', () => {
  const prefix = (r: string) => ({ type: 'ReplacePrefixMatch' as const, replacePrefixMatch: r });
  const full = (r: string) => ({ type: 'ReplaceFullPath' as const, replaceFullPath: r });
  assert.equal(modifyPath(prefix('/one'), '/prefix/one/two', '/prefix/one'), '/one/two');
  assert.equal(modifyPath(prefix('/'), '/strip-prefix/three', '/strip-prefix'), '/three');
  assert.equal(modifyPath(prefix('/'), '/strip-prefix', '/strip-prefix'), '/');
  assert.equal(modifyPath(full('/one'), '/full/one/two', '/full/one'), '/one');
  assert.equal(modifyPath(full('/test'), '/full/rewrite-path-and-modify-headers/test', null), '/test');
  assert.equal(
    modifyPath(
      prefix('/prefix'),
      '/prefix/rewrite-path-and-modify-headers/one',
      '/prefix/rewrite-path-and-modify-headers',
    ),
    '/prefix/one',
  );
});

test('property: a prefix rewrite keeps what follows the prefix, element-wise', () => {
  const seg = fc.stringMatching(/^[a-z]{1,4}$/);
  const path = fc.array(seg, { maxLength: 4 }).map((s) => '/' + s.join('/'));
  fc.assert(
    fc.property(path, path, path, fc.boolean(), (prefix, rest, replacement, trailing) => {
      const full = prefix === '/' ? rest : rest === '/' ? prefix : prefix + rest;
      const written = trailing && prefix !== '/' ? prefix + '/' : prefix;
      assert.equal(underPrefix(full, normalizePrefix(written)), true);
      const out = replacePrefix(full, written, replacement);
      const tail = full.slice(normalizePrefix(prefix).length);
      assert.equal(out, normalizePrefix(replacement) + tail || '/');
      assert.ok(out.startsWith('/'));
      assert.ok(!out.includes('//'));
    }),
    { numRuns: 300 },
  );
});

const redirect = (r: Partial<Redirect>): Redirect => ({ statusCode: 302, ...r }) as Redirect;
const req = (path: string, query = '') => ({ scheme: 'http' as const, host: 'echo', port: 80, path, query });

test('conformance MeshHTTPRouteRedirectPath / Port / Scheme / HostAndStatus: status and Location', () => {
  const p = (value: string) => ({ type: 'ReplacePrefixMatch' as const, replacePrefixMatch: value });
  const f = (value: string) => ({ type: 'ReplaceFullPath' as const, replaceFullPath: value });
  const cases: [Partial<Redirect>, string, string | null, number, string][] = [
    [
      { path: p('/replacement-prefix') },
      '/original-prefix/lemon',
      '/original-prefix',
      302,
      'http://echo/replacement-prefix/lemon',
    ],
    [
      { path: f('/full-path-replacement') },
      '/full/path/original',
      '/full',
      302,
      'http://echo/full-path-replacement',
    ],
    [
      { hostname: 'example.org', path: p('/replacement-prefix') },
      '/path-and-host',
      '/path-and-host',
      302,
      'http://example.org/replacement-prefix',
    ],
    [
      { path: p('/replacement-prefix'), statusCode: 301 },
      '/path-and-status',
      '/path-and-status',
      301,
      'http://echo/replacement-prefix',
    ],
    [{ port: 8083 }, '/port', '/port', 302, 'http://echo:8083/port'],
    [{ hostname: 'example.org', port: 8083, statusCode: 301 }, '/p', '/p', 301, 'http://example.org:8083/p'],
    [{ scheme: 'https' }, '/scheme', '/scheme', 302, 'https://echo/scheme'],
    [{ scheme: 'https', hostname: 'example.org', statusCode: 302 }, '/s', '/s', 302, 'https://example.org/s'],
    [{ scheme: 'https', port: 8443 }, '/s', '/s', 302, 'https://echo:8443/s'],
    [{ scheme: 'http', port: 80 }, '/s', '/s', 302, 'http://echo/s'],
  ];
  for (const [r, path, prefix, status, location] of cases) {
    assert.deepEqual(
      redirectResponse(redirect(r), req(path), prefix),
      { status, location },
      JSON.stringify(r),
    );
  }
  // Without port or scheme the port is the one the client addressed; the query is kept.
  assert.deepEqual(redirectResponse(redirect({}), { ...req('/a', 'x=1'), port: 8080 }, '/'), {
    status: 302,
    location: 'http://echo:8080/a?x=1',
  });
  assert.equal(redirectResponse(redirect({}), { ...req('/a'), host: '::1' }, '/').location, 'http://[::1]/a');
});

test('splitHost: host names, IPv4, bracketed IPv6, bad ports', () => {
  assert.deepEqual(splitHost('echo'), { host: 'echo', port: null });
  assert.deepEqual(splitHost('echo:8080'), { host: 'echo', port: 8080 });
  assert.deepEqual(splitHost('[::1]:81'), { host: '::1', port: 81 });
  assert.deepEqual(splitHost('[::1]'), { host: '::1', port: null });
  assert.deepEqual(splitHost('echo:99999'), { host: 'echo', port: null });
});

const pairs = (raw: string[]) => {
  const out: [string, string][] = [];
  for (let i = 0; i < raw.length; i += 2) out.push([raw[i] as string, raw[i + 1] as string]);
  return out;
};
const values = (raw: string[], name: string) =>
  pairs(raw)
    .filter(([n]) => n.toLowerCase() === name.toLowerCase())
    .map(([, value]) => value);

test('conformance MeshHTTPRouteRequestHeaderModifier: set, add, remove, case-insensitively', () => {
  const modifier = {
    set: [{ name: 'X-Header-Set', value: 'header-set' }],
    add: [{ name: 'X-Header-Add', value: 'header-add' }],
    remove: ['X-Header-Remove'],
  };
  const out = modifyHeaders(modifier, [
    'x-header-set',
    'original-val-set',
    'x-header-add',
    'original-val-add',
    'x-header-remove',
    'original-val-remove',
    'Another-Header',
    'another-header-val',
  ]);
  assert.deepEqual(values(out, 'X-Header-Set'), ['header-set']);
  assert.deepEqual(values(out, 'X-Header-Add'), ['original-val-add', 'header-add']);
  assert.deepEqual(values(out, 'X-Header-Remove'), []);
  assert.deepEqual(values(out, 'Another-Header'), ['another-header-val']);
});

test('property: after a modifier, set headers have exactly their value, removed ones are gone, others untouched', () => {
  const name = fc.constantFrom('a', 'A', 'b', 'B', 'c', 'x-y', 'X-Y');
  const header = fc.record({ name, value: fc.stringMatching(/^[a-z0-9]{1,4}$/) });
  fc.assert(
    fc.property(
      fc.array(fc.tuple(name, fc.stringMatching(/^[a-z0-9]{1,4}$/)), { maxLength: 8 }),
      fc.uniqueArray(header, { selector: (h) => h.name.toLowerCase(), maxLength: 3 }),
      fc.uniqueArray(header, { selector: (h) => h.name.toLowerCase(), maxLength: 3 }),
      fc.uniqueArray(name, { selector: (n) => n.toLowerCase(), maxLength: 3 }),
      (input, set, add, remove) => {
        const raw = input.flat();
        const out = modifyHeaders({ set, add, remove }, raw);
        const lower = (s: string) => s.toLowerCase();
        for (const h of set) {
          const extra = add.filter((a) => lower(a.name) === lower(h.name)).map((a) => a.value);
          assert.deepEqual(values(out, h.name), [h.value, ...extra]);
        }
        for (const n of remove) {
          if (set.some((h) => lower(h.name) === lower(n)) || add.some((h) => lower(h.name) === lower(n)))
            continue;
          assert.deepEqual(values(out, n), []);
        }
        const touched = new Set([
          ...set.map((h) => lower(h.name)),
          ...add.map((h) => lower(h.name)),
          ...remove.map(lower),
        ]);
        const untouched = (list: [string, string][]) => list.filter(([n]) => !touched.has(lower(n)));
        assert.deepEqual(untouched(pairs(out)), untouched(input));
      },
    ),
    { numRuns: 300 },
  );
});

const backend = (name: string, weight: number, resolved = true): CompiledBackend => ({
  namespace: 'mesh',
  name,
  port: 80,
  weight,
  resolved,
  filters: [],
});

test('weighted pick: weight 0 gets nothing, shares follow the weights, all-zero picks nothing', () => {
  const set = compileBackends([
    backend('a', 1),
    backend('zero', 0),
    backend('b', 3),
    backend('missing', 1, false),
  ]);
  const random = seededRandom(7);
  const counts = new Map<string, number>();
  const n = 50_000;
  for (let i = 0; i < n; i++) {
    const b = pickBackend(set, random);
    counts.set(b?.name ?? 'null', (counts.get(b?.name ?? 'null') ?? 0) + 1);
  }
  assert.equal(counts.get('zero'), undefined);
  assert.ok(Math.abs((counts.get('a') ?? 0) / n - 0.2) < 0.01, JSON.stringify([...counts]));
  assert.ok(Math.abs((counts.get('b') ?? 0) / n - 0.6) < 0.01, JSON.stringify([...counts]));
  assert.ok(
    Math.abs((counts.get('missing') ?? 0) / n - 0.2) < 0.01,
    'an unresolved backend keeps its share (answered 500)',
  );
  assert.equal(pickBackend(compileBackends([backend('z', 0)]), random), null);
  assert.equal(pickBackend(compileBackends([]), random), null);
});

test('property: the pick is the backend whose cumulative interval holds the draw', () => {
  fc.assert(
    fc.property(
      fc.array(fc.integer({ min: 0, max: 5 }), { minLength: 1, maxLength: 8 }),
      fc.double({ min: 0, max: 0.999999, noNaN: true }),
      (weights, draw) => {
        const set = compileBackends(weights.map((w, i) => backend(`b${i}`, w)));
        const picked = pickBackend(set, { next: () => draw });
        const total = weights.reduce((a, b) => a + b, 0);
        if (total === 0) return picked === null;
        const x = draw * total;
        let acc = 0;
        const want = weights.findIndex((w) => (acc += w) > x);
        return picked?.name === `b${want}` && (picked?.weight ?? 0) > 0;
      },
    ),
    { numRuns: 500 },
  );
});
