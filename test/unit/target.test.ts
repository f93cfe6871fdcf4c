// parseAuthority (src/core/target.ts): host[:port] as requests name their targets; TargetMap, a map by target.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { parseAuthority, TargetMap, targetKey } from '../../src/core/target.ts';

test('parseAuthority: examples', () => {
  assert.deepEqual(parseAuthority('web.default:8080', 80), { host: 'web.default', port: 8080 });
  assert.deepEqual(parseAuthority('web', 80), { host: 'web', port: 80 });
  assert.deepEqual(parseAuthority('[::1]:9', 80), { host: '::1', port: 9 });
  // Regression: an empty port (RFC 3986: port = *DIGIT) means the default, it used to be refused.
  assert.deepEqual(parseAuthority('a:', 80), { host: 'a', port: 80 });
  assert.deepEqual(parseAuthority('[::1]:', 443), { host: '::1', port: 443 });
  for (const bad of ['', ':80', 'a:0', 'a:65536', 'a:123456', 'a:8o', '[::1', 'a:+1']) {
    assert.equal(parseAuthority(bad, 80), null, bad);
  }
});

test('property: parseAuthority reads back what targetKey writes', () => {
  const host = fc.oneof(fc.domain(), fc.ipV4(), fc.ipV6());
  fc.assert(
    fc.property(host, fc.integer({ min: 1, max: 65535 }), (h, port) => {
      assert.deepEqual(parseAuthority(targetKey({ host: h, port }), 80), { host: h, port });
    }),
  );
});

test('property: parseAuthority never throws and gives a port in 1..65535', () => {
  fc.assert(
    fc.property(fc.string({ maxLength: 40 }), fc.integer({ min: 1, max: 65535 }), (s, dflt) => {
      const t = parseAuthority(s, dflt);
      if (t !== null) assert.ok(t.port >= 1 && t.port <= 65535 && t.host.length > 0);
    }),
  );
});

test('property: TargetMap holds what a Map keyed by targetKey holds', () => {
  const target = fc.record({
    host: fc.constantFrom('a', 'b', '::1', '10.0.0.1'),
    port: fc.integer({ min: 1, max: 4 }),
  });
  const op = fc.tuple(fc.constantFrom('set', 'delete', 'clear'), target, fc.nat());
  fc.assert(
    fc.property(fc.array(op, { maxLength: 40 }), (ops) => {
      const map = new TargetMap<number>();
      const model = new Map<string, number>();
      for (const [kind, t, v] of ops) {
        if (kind === 'set') {
          map.set(t, v);
          model.set(targetKey(t), v);
        } else if (kind === 'delete') {
          assert.equal(map.delete(t), model.delete(targetKey(t)));
        } else {
          map.clear();
          model.clear();
        }
        assert.equal(map.size, model.size);
        assert.equal(map.get({ ...t }), model.get(targetKey(t)));
      }
      assert.deepEqual([...map.values()].sort(), [...model.values()].sort());
    }),
  );
});
