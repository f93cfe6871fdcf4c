// Properties and examples for the pure policy matchers (src/proxy/policy/match.ts, with the
// parsers of src/core/policy-syntax.ts and src/core/spiffe.ts): identity patterns ("*" within
// one segment, lone "*"), SPIFFE namespaces, CIDR parsing and matching (IPv4-mapped IPv6 peers
// against IPv4 blocks), and HTTP routes (exact, prefix, methods).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  hasDotSegment,
  resolveDotSegments,
  compileIdentityPattern,
  compileNetworks,
  normalizePeerIp,
  routeMatches,
} from '../../src/proxy/policy/match.ts';
import { identityPatternProblem, parseCidr, routePathProblem } from '../../src/core/policy-syntax.ts';
import { spiffeNamespace } from '../../src/core/spiffe.ts';

const segment = fc.stringMatching(/^[a-z0-9][a-z0-9.-]{0,12}$/);
const spiffe = fc
  .tuple(segment, segment, segment)
  .map(([td, ns, sa]) => ({ id: `spiffe://${td}/ns/${ns}/sa/${sa}`, td, ns, sa }));

test('identity patterns: a pattern without "*" matches only itself', () => {
  fc.assert(
    fc.property(spiffe, spiffe, (a, b) => {
      const matches = compileIdentityPattern(a.id);
      assert.equal(matches(a.id), true);
      assert.equal(matches(b.id), a.id === b.id);
    }),
  );
});

test('identity patterns: a lone "*" matches every identity', () => {
  fc.assert(fc.property(fc.string(), (id) => compileIdentityPattern('*')(id)));
});

test('identity patterns: "*" replacing one segment matches any value of that segment only', () => {
  fc.assert(
    fc.property(spiffe, segment, segment, (who, otherNs, otherSa) => {
      const anyNs = compileIdentityPattern(`spiffe://${who.td}/ns/*/sa/${who.sa}`);
      assert.equal(anyNs(who.id), true);
      assert.equal(anyNs(`spiffe://${who.td}/ns/${otherNs}/sa/${who.sa}`), true);
      assert.equal(anyNs(`spiffe://${who.td}/ns/${otherNs}/sa/${otherSa}`), otherSa === who.sa);
      // Never across a "/": the namespace wildcard cannot swallow two segments.
      assert.equal(anyNs(`spiffe://${who.td}/ns/a/b/sa/${who.sa}`), false);
    }),
  );
});

test('identity patterns: "*" inside a segment matches any run of characters but "/"', () => {
  fc.assert(
    fc.property(segment, segment, fc.stringMatching(/^[a-z0-9/-]{0,8}$/), (prefix, suffix, middle) => {
      const matches = compileIdentityPattern(`spiffe://td/ns/${prefix}*${suffix}/sa/x`);
      const id = `spiffe://td/ns/${prefix}${middle}${suffix}/sa/x`;
      assert.equal(matches(id), !middle.includes('/'));
    }),
  );
});

test('identity patterns: regex metacharacters in a pattern are literal', () => {
  const matches = compileIdentityPattern('spiffe://a.b/ns/x+y*/sa/(z)');
  assert.equal(matches('spiffe://a.b/ns/x+yQQ/sa/(z)'), true);
  assert.equal(matches('spiffe://aXb/ns/x+yQQ/sa/(z)'), false);
  assert.equal(matches('spiffe://a.b/ns/xxy/sa/(z)'), false);
});

test('identity pattern validation names what is wrong', () => {
  assert.equal(identityPatternProblem('*'), null);
  assert.equal(identityPatternProblem('spiffe://td/ns/*/sa/web'), null);
  assert.match(identityPatternProblem('web') ?? '', /SPIFFE ID/);
  assert.match(identityPatternProblem('spiffe://td') ?? '', /trust domain and a path/);
  assert.match(identityPatternProblem('spiffe://td/ns//sa/x') ?? '', /empty path segment/);
  assert.match(identityPatternProblem('spiffe://td/ns/a b/sa/x') ?? '', /spaces/);
  fc.assert(fc.property(spiffe, (who) => identityPatternProblem(who.id) === null));
});

test('spiffeNamespace reads the namespace of Trellis SPIFFE IDs and nothing else', () => {
  fc.assert(fc.property(spiffe, (who) => spiffeNamespace(who.id) === who.ns));
  fc.assert(
    fc.property(fc.string(), (text) => {
      const ns = spiffeNamespace(text);
      return ns === null || text.includes(`/ns/${ns}/sa/`);
    }),
  );
  assert.equal(spiffeNamespace('spiffe://td/ns/a/b/sa/c'), null);
  assert.equal(spiffeNamespace('spiffe://td/sa/c'), null);
});

const ipv4 = fc.ipV4();
const prefix4 = fc.integer({ min: 0, max: 32 });

function ipv4ToInt(ip: string): number {
  return ip.split('.').reduce((acc, part) => acc * 256 + Number(part), 0);
}

test('CIDR: an IPv4 block matches exactly the addresses sharing its first PREFIX bits', () => {
  fc.assert(
    fc.property(ipv4, prefix4, ipv4, (network, prefix, peer) => {
      const { matches, invalid } = compileNetworks([`${network}/${prefix}`]);
      assert.deepEqual(invalid, []);
      const mask = prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
      const expected = (ipv4ToInt(network) & mask) >>> 0 === (ipv4ToInt(peer) & mask) >>> 0;
      assert.equal(matches(peer), expected);
      // A dual-stack listener reports IPv4 clients as IPv4-mapped IPv6: same answer.
      assert.equal(matches(`::ffff:${peer}`), expected);
    }),
  );
});

test('CIDR: an IPv6 block matches its own network address, and parsing round-trips', () => {
  fc.assert(
    fc.property(fc.ipV6(), fc.integer({ min: 0, max: 128 }), (network, prefix) => {
      const cidr = parseCidr(`${network}/${prefix}`);
      assert.deepEqual(cidr, { family: 'ipv6', address: network, prefix });
      const { matches } = compileNetworks([`${network}/${prefix}`]);
      const peer = normalizePeerIp(network);
      // An IPv4-mapped network address normalizes to IPv4, which an IPv6 block does not hold.
      if (peer?.family === 'ipv6') assert.equal(matches(network), true);
    }),
  );
});

test('CIDR: anything that is not ADDRESS[/PREFIX] is rejected, never thrown', () => {
  fc.assert(
    fc.property(fc.string(), (text) => {
      const cidr = parseCidr(text);
      if (cidr !== null) assert.ok(cidr.prefix <= (cidr.family === 'ipv4' ? 32 : 128));
      const { matches } = compileNetworks([text]);
      matches('127.0.0.1');
    }),
  );
  for (const bad of ['10.0.0.0/33', '10.0.0.0/', '10.0.0.0/08', '::1/129', 'fe80::1%eth0/64', 'ten/8', '']) {
    assert.equal(parseCidr(bad), null, bad);
  }
  assert.deepEqual(parseCidr('10.1.2.3'), { family: 'ipv4', address: '10.1.2.3', prefix: 32 });
  assert.deepEqual(compileNetworks(['nope', '10.0.0.0/8']).invalid, ['nope']);
});

test('CIDR examples: loopback, benchmarking range, IPv6 loopback, junk peers', () => {
  const { matches } = compileNetworks(['198.18.0.0/15', '::1/128']);
  assert.equal(matches('198.19.255.255'), true);
  assert.equal(matches('198.20.0.1'), false);
  assert.equal(matches('::ffff:198.18.0.7'), true);
  assert.equal(matches('::1'), true);
  assert.equal(matches('127.0.0.1'), false);
  assert.equal(matches('not an ip'), false);
  assert.equal(matches(''), false);
  assert.equal(compileNetworks([]).matches('127.0.0.1'), false);
});

const pathSegment = fc.stringMatching(/^[a-z0-9_-]{1,8}$/);
const path = fc.array(pathSegment, { maxLength: 4 }).map((parts) => '/' + parts.join('/'));
const method = fc.constantFrom('GET', 'POST', 'PUT', 'DELETE', 'PATCH');

test('routes: an exact path matches only itself; a prefix matches what starts with it', () => {
  fc.assert(
    fc.property(path, path, method, (routePath, requestPath, m) => {
      assert.equal(
        routeMatches({ path: routePath, methods: [] }, { method: m, path: requestPath }),
        routePath === requestPath,
      );
      const prefix = routePath.endsWith('/') ? routePath : routePath + '/';
      assert.equal(
        routeMatches({ path: prefix + '*', methods: [] }, { method: m, path: requestPath }),
        requestPath.startsWith(prefix),
      );
    }),
  );
});

test('routes: methods restrict, an empty list allows any', () => {
  fc.assert(
    fc.property(fc.subarray(['GET', 'POST', 'PUT', 'DELETE', 'PATCH']), method, (methods, m) => {
      const matched = routeMatches({ path: '/*', methods }, { method: m, path: '/x' });
      assert.equal(matched, methods.length === 0 || methods.includes(m));
    }),
  );
  assert.equal(routeMatches({ path: '/api/*', methods: ['GET'] }, { method: 'get', path: '/api/x' }), false);
  assert.equal(routeMatches({ path: '/api/*', methods: [] }, { method: 'GET', path: '/api' }), false);
  assert.equal(routeMatches({ path: '/api/*', methods: [] }, { method: 'GET', path: '/api/' }), true);
});

test('route path validation', () => {
  assert.equal(routePathProblem('/api/*'), null);
  assert.equal(routePathProblem('/'), null);
  assert.match(routePathProblem('api') ?? '', /starting with "\/"/);
  assert.match(routePathProblem('/a/*/b') ?? '', /only allowed at the end/);
  assert.match(routePathProblem('/a?b') ?? '', /"\?"/);
});

// Regression (issue 9): an allow rule for /public/* let /public/../admin and its encoded spellings
// through, and the app resolved them to /admin.
test('hasDotSegment: every spelling of a dot-segment, and nothing else', () => {
  for (const p of [
    '/public/../admin',
    '/public/./x',
    '/..',
    '/public/%2e%2e/admin',
    '/public/%2E./admin',
    '/public%2f..%2fadmin',
    '/public%5C..%5Cadmin',
    '/public\\..\\admin',
    '/public/..;/admin',
    '/public/.;x/y',
  ]) {
    assert.equal(hasDotSegment(p), true, p);
  }
  for (const p of [
    '/',
    '/a.b',
    '/..a',
    '/a..',
    '/.well-known/x',
    '/a/...',
    '/%2e%2e%2e',
    '/v1.2/x',
    '/a%2fb',
  ]) {
    assert.equal(hasDotSegment(p), false, p);
  }
});

test('property: hasDotSegment is true exactly when a segment, decoded, is "." or ".."', () => {
  const segment = fc.oneof(
    fc.constantFrom('.', '..', '%2e', '%2E%2e', 'a', '.a', 'a.', '...', ''),
    fc.stringMatching(/^[a-z0-9._~-]{0,6}$/),
  );
  fc.assert(
    fc.property(fc.array(segment, { maxLength: 6 }), fc.constantFrom('/', '%2f', '%5C'), (segments, sep) => {
      const path = '/' + segments.join(sep);
      const decoded = segments.map((s) => s.replace(/%2e/gi, '.'));
      const expected = decoded.some((s) => s === '.' || s === '..');
      assert.equal(hasDotSegment(path), expected, path);
    }),
  );
});

test('resolveDotSegments: RFC 3986 5.2.4 over every spelling hasDotSegment knows', () => {
  const cases: [string, string][] = [
    ['/public/../admin', '/admin'],
    ['/public/%2e%2e/admin', '/admin'],
    ['/public%2f..%2fadmin', '/admin'],
    ['/public/..;/admin', '/admin'],
    ['/a/./b', '/a/b'],
    ['/a/b/..', '/a/'],
    ['/a/b/.', '/a/b/'],
    ['/../../x', '/x'],
    ['/a/b', '/a/b'],
    ['/a;p=1/b', '/a;p=1/b'],
  ];
  for (const [path, want] of cases) assert.equal(resolveDotSegments(path), want, path);
  // Regression (red team): servers that merge slashes before resolving serve /admin here.
  assert.equal(resolveDotSegments('/public//../admin'), '/public/admin');
  assert.equal(resolveDotSegments('/public//../admin', true), '/admin');
  assert.equal(resolveDotSegments('/a//b/', true), '/a/b/');
});

test('property: a resolved path has no dot-segment, and resolving is idempotent', () => {
  const segment = fc.oneof(
    fc.constantFrom('.', '..', '%2e', '%2E%2e', 'a', '.a', '...', '', 'x;p'),
    fc.stringMatching(/^[a-z0-9._~-]{0,6}$/),
  );
  fc.assert(
    fc.property(fc.array(segment, { maxLength: 8 }), fc.constantFrom('/', '%2f', '\\'), (segments, sep) => {
      const resolved = resolveDotSegments('/' + segments.join(sep));
      assert.equal(hasDotSegment(resolved), false, resolved);
      assert.equal(resolveDotSegments(resolved), resolved);
      assert.ok(resolved.startsWith('/'));
    }),
  );
});
