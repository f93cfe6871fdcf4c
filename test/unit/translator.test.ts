// Tests for the Destination translator (src/control/destination/translator.ts): the message
// mapping (round-tripped through the proxy's decoder, property-based), the bounded queue that
// follows a sink's backpressure, and a stalled subscriber that is dropped without holding up the
// others; Watch paths, and the one spelling of an IP that address watches compare by.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import type { ApiUpdate, ApiUpdateOutput } from '../../src/api/load.ts';
import { SubscriberQueue, toApiUpdate, type UpdateSink } from '../../src/control/destination/translator.ts';
import { fromApiUpdate } from '../../src/proxy/resolve/destination-client.ts';
import { parseDestinationPath } from '../../src/control/destination/server.ts';
import { canonicalIp } from '../../src/control/discovery/watcher.ts';
import { targetKey } from '../../src/core/target.ts';
import type { Endpoint, Update } from '../../src/core/endpoints.ts';

/** A sink with a buffer of `room` messages, drained by hand. */
class FakeSink implements UpdateSink {
  readonly written: ApiUpdate[] = [];
  room: number;
  #drain: (() => void) | null = null;
  constructor(room: number) {
    this.room = room;
  }
  write(message: ApiUpdate): boolean {
    this.written.push(message);
    this.room -= 1;
    return this.room > 0;
  }
  onceDrain(callback: () => void): void {
    this.#drain = callback;
  }
  drain(room: number): void {
    this.room = room;
    const callback = this.#drain;
    this.#drain = null;
    callback?.();
  }
}

const endpoint = (host: string, port = 8080, fields: Partial<Endpoint> = {}): Endpoint => ({
  address: { host, port },
  weight: 1,
  labels: { namespace: 'default', service: 'web' },
  meshed: false,
  identity: null,
  protocolHint: 'unknown',
  ...fields,
});

/** What the proxy reads: proto3 defaults filled in, as proto-loader does with `defaults: true`. */
function asReceived(message: ApiUpdate): ApiUpdateOutput {
  const update = message.add ? 'add' : message.remove ? 'remove' : 'noEndpoints';
  return { ...structuredClone(message), reset: message.reset ?? false, update } as ApiUpdateOutput;
}

test('resets, deltas and does-not-exist map to the documented messages', () => {
  assert.deepEqual(toApiUpdate({ kind: 'does-not-exist' }), { noEndpoints: { exists: false } });
  assert.deepEqual(toApiUpdate({ kind: 'reset', endpoints: [] }), { noEndpoints: { exists: true } });
  const reset = toApiUpdate({
    kind: 'reset',
    endpoints: [
      endpoint('10.0.0.1', 80, { meshed: true, protocolHint: 'h2', identity: 'spiffe://t/ns/a/sa/b' }),
    ],
  });
  assert.equal(reset.reset, true);
  assert.deepEqual(reset.add?.endpoints?.[0], {
    address: { ip: '10.0.0.1', port: 80 },
    weight: 1,
    labels: { namespace: 'default', service: 'web' },
    meshed: true,
    identity: 'spiffe://t/ns/a/sa/b',
    protocolHint: 'H2',
  });
  assert.deepEqual(toApiUpdate({ kind: 'remove', addresses: ['10.0.0.1:80', '[fd00::1]:81', 'junk'] }), {
    remove: {
      addresses: [
        { ip: '10.0.0.1', port: 80 },
        { ip: 'fd00::1', port: 81 },
      ],
    },
  });
});

test('every update survives the trip to the proxy unchanged (property)', () => {
  const host = fc.oneof(fc.ipV4(), fc.ipV6());
  const ep = fc.record({
    address: fc.record({ host, port: fc.integer({ min: 1, max: 65535 }) }),
    weight: fc.integer({ min: 1, max: 1000 }),
    labels: fc.dictionary(fc.string({ minLength: 1, maxLength: 8 }), fc.string({ maxLength: 8 }), {
      maxKeys: 4,
    }),
    meshed: fc.boolean(),
    identity: fc.option(fc.string({ minLength: 1, maxLength: 20 }), { nil: null }),
    protocolHint: fc.constantFrom('unknown' as const, 'h2' as const, 'opaque' as const),
  });
  const update: fc.Arbitrary<Update> = fc.oneof(
    fc.record({ kind: fc.constant('reset' as const), endpoints: fc.array(ep, { maxLength: 5 }) }),
    fc.record({ kind: fc.constant('add' as const), endpoints: fc.array(ep, { minLength: 1, maxLength: 5 }) }),
    fc.record({ kind: fc.constant('does-not-exist' as const) }),
  );
  fc.assert(
    fc.property(update, (u) => {
      // structuredClone: fast-check builds null-prototype records.
      assert.deepEqual(fromApiUpdate(asReceived(toApiUpdate(u))), structuredClone(u));
    }),
  );
  fc.assert(
    fc.property(
      fc.array(fc.record({ host, port: fc.integer({ min: 1, max: 65535 }) }), { maxLength: 5 }),
      (addrs) => {
        const keys = addrs.map((a) =>
          a.host.includes(':') ? `[${a.host}]:${a.port}` : `${a.host}:${a.port}`,
        );
        assert.deepEqual(fromApiUpdate(asReceived(toApiUpdate({ kind: 'remove', addresses: keys }))), {
          kind: 'remove',
          addresses: keys,
        });
      },
    ),
  );
});

test('the queue holds messages while the sink pushes back and sends them in order on drain', () => {
  const sink = new FakeSink(2);
  let overflowed = false;
  const queue = new SubscriberQueue(sink, { capacity: 10, onOverflow: () => (overflowed = true) });
  for (let i = 1; i <= 6; i++) queue.push({ kind: 'add', endpoints: [endpoint(`10.0.0.${i}`)] });
  assert.equal(sink.written.length, 2, 'writes stop once the sink is full');
  assert.equal(queue.pending, 4);
  sink.drain(100);
  assert.equal(queue.pending, 0);
  assert.deepEqual(
    sink.written.map((m) => m.add?.endpoints?.[0]?.address?.ip),
    ['10.0.0.1', '10.0.0.2', '10.0.0.3', '10.0.0.4', '10.0.0.5', '10.0.0.6'],
  );
  assert.equal(overflowed, false);
});

test('a stalled subscriber is dropped after `capacity` queued updates; the others get everything', () => {
  const capacity = 100;
  const stalled = new FakeSink(1); // full after its first message, and never drains
  const healthy = Array.from({ length: 3 }, () => new FakeSink(Number.MAX_SAFE_INTEGER));
  const overflows: string[] = [];
  const queues = [stalled, ...healthy].map(
    (sink, i) => new SubscriberQueue(sink, { capacity, onOverflow: () => overflows.push(`sink${i}`) }),
  );
  const total = capacity + 50;
  for (let i = 0; i < total; i++) {
    const update: Update = { kind: 'add', endpoints: [endpoint('10.1.0.1', 1000 + i)] };
    for (const queue of queues) queue.push(update);
  }
  assert.deepEqual(overflows, ['sink0'], 'only the stalled subscriber overflowed, once');
  assert.equal(queues[0]?.closed, true);
  assert.equal(queues[0]?.pending, 0, 'its queue is released');
  assert.equal(stalled.written.length, 1);
  for (const sink of healthy) assert.equal(sink.written.length, total);
  // A late drain of the dropped subscriber sends nothing more.
  stalled.drain(1000);
  assert.equal(stalled.written.length, 1);
});

test('Watch paths: service names in every DNS form, direct addresses, and junk', () => {
  const web = { kind: 'service', key: { namespace: 'default', name: 'web', port: 8080 } };
  assert.deepEqual(parseDestinationPath('web.default.svc.cluster.local:8080'), web);
  assert.deepEqual(parseDestinationPath('web.default.svc:8080'), web);
  assert.deepEqual(parseDestinationPath('web.default:8080'), web);
  assert.deepEqual(parseDestinationPath('web.default.svc.example.org:8080', 'example.org'), web);
  assert.deepEqual(parseDestinationPath('10.0.0.7:80'), { kind: 'address', host: '10.0.0.7', port: 80 });
  assert.deepEqual(parseDestinationPath('[fd00::7]:80'), { kind: 'address', host: 'fd00::7', port: 80 });
  for (const bad of ['web:8080', 'web.default', 'a.b.c.d:80', 'web.default:0', 'Web_x.default:80', '']) {
    assert.equal(parseDestinationPath(bad), null, bad);
  }
});

test('property: every IP literal in a Watch path is an address watch of that IP and port', () => {
  fc.assert(
    fc.property(fc.oneof(fc.ipV4(), fc.ipV6()), fc.integer({ min: 1, max: 65535 }), (host, port) => {
      assert.deepEqual(parseDestinationPath(targetKey({ host, port })), { kind: 'address', host, port });
    }),
    { numRuns: 500 },
  );
});

/** An IPv6 address written out in full, upper-case, every group zero-padded. */
function expanded(ip: string): string {
  const url = new URL(`http://[${ip}]/`).hostname.slice(1, -1); // embedded IPv4 becomes hex groups
  const [head = '', tail = ''] = url.split('::');
  const left = head === '' ? [] : head.split(':');
  const right = url.includes('::') ? (tail === '' ? [] : tail.split(':')) : [];
  const zeros = Array.from({ length: 8 - left.length - right.length }, () => '0');
  const groups = url.includes('::') ? [...left, ...zeros, ...right] : left;
  return groups.map((g) => g.padStart(4, '0').toUpperCase()).join(':');
}

test('property: canonicalIp gives every spelling of an IPv6 address one form, and keeps IPv4', () => {
  fc.assert(
    fc.property(fc.ipV6(), (ip) => {
      const canonical = canonicalIp(ip);
      assert.equal(canonicalIp(expanded(ip)), canonical, `${ip} spelled ${expanded(ip)}`);
      assert.equal(canonicalIp(canonical), canonical, 'idempotent');
      assert.equal(canonical, canonical.toLowerCase());
      assert.ok(!/(^|:)0[0-9a-f]/.test(canonical), `no leading zeros in ${canonical}`);
    }),
    { numRuns: 500 },
  );
  fc.assert(fc.property(fc.ipV4(), (ip) => assert.equal(canonicalIp(ip), ip)));
  for (const notIp of ['', 'web.default', '[::1]', 'fd00::1%eth0']) assert.equal(canonicalIp(notIp), notIp);
});
