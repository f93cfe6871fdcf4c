// Tests for the proxy's warm start (src/proxy/outbound/warm-up.ts): the control-plane clients are
// loaded when a static destination names a service or gRPC is loaded anyway, never otherwise; a
// static destination's endpoints are known (a pick is synchronous) once warm-up returns, and the
// pick it made leaves no request counted on the endpoint; every meshed endpoint (at most 8, all at
// once) gets its mTLS connection opened ahead for HTTP/1 (and not for opaque destinations, nor
// plain endpoints); a
// destination the control plane never answers costs at most the budget and is logged; direct
// targets (addresses, names that are not services) need nothing.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { silentLogger, type Logger } from '../../src/core/log.ts';
import { targetKey, type Target } from '../../src/core/target.ts';
import { ServiceDiscovery } from '../../src/proxy/outbound/discovery.ts';
import { warmUp, type WarmUpParts } from '../../src/proxy/outbound/warm-up.ts';
import type { MeshOutbound } from '../../src/proxy/mesh/outbound.ts';
import type { Resolution, Resolver } from '../../src/proxy/resolve/resolver.ts';
import { StaticResolver, staticEndpoint } from '../../src/proxy/resolve/static.ts';

const WEB: Target = { host: 'web.default', port: 8080 };
const ID = 'spiffe://cluster.local/ns/default/sa/web';

/** A mesh whose HTTP/1 pool records the connections asked for and answers them at once. */
function fakeMesh(ok = true): { mesh: MeshOutbound; asked: string[] } {
  const asked: string[] = [];
  const mesh = {
    h1Pool: {
      connection(address: Target, identity: string, cb: (conn: object | null) => void): void {
        asked.push(`${targetKey(address)} ${identity}`);
        queueMicrotask(() => cb(ok ? {} : null));
      },
    },
  } as unknown as MeshOutbound;
  return { mesh, asked };
}

function partsOf(discovery: ServiceDiscovery, extra: Partial<WarmUpParts> = {}): WarmUpParts {
  return {
    discovery,
    routes: null,
    mesh: null,
    preload: async () => {},
    preloadAlways: false,
    log: silentLogger,
    ...extra,
  };
}

test('the control-plane clients are loaded for a static service, or when gRPC is loaded anyway, and only then', async () => {
  const resolver = new StaticResolver({ [targetKey(WEB)]: [staticEndpoint('127.0.0.1:9001')] });
  const d = new ServiceDiscovery({ resolver, failFastMs: 500, idleMs: 0, log: silentLogger });
  let loads = 0;
  const preload = async (): Promise<void> => void loads++;
  const direct = { host: '127.0.0.1', port: 9003 };
  // Only addresses: a proxy that never names a service never loads gRPC.
  await warmUp(partsOf(d, { preload }), [], 1000);
  await warmUp(partsOf(d, { preload }), [{ target: direct, http1: true }], 1000);
  assert.equal(loads, 0);
  // A static destination that names a service, or identity/policy from the control plane.
  await warmUp(partsOf(d, { preload }), [{ target: WEB, http1: true }], 1000);
  assert.equal(loads, 1);
  await warmUp(partsOf(d, { preload, preloadAlways: true }), [], 1000);
  assert.equal(loads, 2);
  d.close();
});

test('a static destination is resolved, and its meshed endpoint connected, before warm-up returns', async () => {
  const resolver = new StaticResolver({
    [targetKey(WEB)]: [staticEndpoint('127.0.0.1:9001', { meshed: true, identity: ID })],
  });
  const d = new ServiceDiscovery({ resolver, failFastMs: 500, idleMs: 0, log: silentLogger });
  const { mesh, asked } = fakeMesh();
  const outcomes = await warmUp(partsOf(d, { mesh }), [{ target: WEB, http1: true }], 1000);
  assert.equal(outcomes.get(targetKey(WEB)), 'connected');
  assert.deepEqual(asked, [`127.0.0.1:9001 ${ID}`]);
  // The first request's pick is synchronous: nothing left to wait for.
  const pick = d.pick(WEB);
  assert.ok(!(pick instanceof Promise), 'the endpoints should be known already');
  assert.ok('address' in pick);
  pick.done();
  d.close();
});

test('every meshed endpoint of a static destination is connected ahead, all at once, at most 8', async () => {
  const meshed = (i: number) => staticEndpoint(`127.0.0.1:${9100 + i}`, { meshed: true, identity: ID });
  const resolver = new StaticResolver({
    // three meshed endpoints and a plain one (nothing to open ahead for it)
    [targetKey(WEB)]: [meshed(0), meshed(1), staticEndpoint('127.0.0.1:9200'), meshed(2)],
    // more than the bound
    'big.default:80': Array.from({ length: 12 }, (_, i) => meshed(10 + i)),
  });
  const d = new ServiceDiscovery({ resolver, failFastMs: 500, idleMs: 0, log: silentLogger });
  const { mesh, asked } = fakeMesh();
  // All in parallel: each connection is asked for before any has answered.
  const askedBeforeFirstAnswer: number[] = [];
  const pool = mesh.h1Pool as unknown as { connection: (...a: unknown[]) => void };
  const ask = pool.connection.bind(pool);
  pool.connection = (address, identity, cb) =>
    ask(address, identity, (conn: unknown) => {
      askedBeforeFirstAnswer.push(asked.length);
      (cb as (c: unknown) => void)(conn);
    });
  const big = { host: 'big.default', port: 80 };
  const outcomes = await warmUp(
    partsOf(d, { mesh }),
    [
      { target: WEB, http1: true },
      { target: big, http1: true },
    ],
    1000,
  );
  assert.equal(outcomes.get(targetKey(WEB)), 'connected');
  assert.equal(outcomes.get(targetKey(big)), 'connected');
  assert.deepEqual(
    asked.filter((a) => Number(a.slice(10, 14)) < 9110).sort(),
    [0, 1, 2].map((i) => `127.0.0.1:${9100 + i} ${ID}`),
  );
  assert.equal(asked.filter((a) => Number(a.slice(10, 14)) >= 9110).length, 8);
  assert.equal(asked.length, 11);
  assert.equal(askedBeforeFirstAnswer[0], 11, 'every connection is asked for before the first one answers');
  d.close();
});

test('some endpoints unreachable: partial; the reachable ones are connected', async () => {
  const resolver = new StaticResolver({
    [targetKey(WEB)]: [
      staticEndpoint('127.0.0.1:9001', { meshed: true, identity: ID }),
      staticEndpoint('127.0.0.1:9002', { meshed: true, identity: ID }),
    ],
  });
  const d = new ServiceDiscovery({ resolver, failFastMs: 500, idleMs: 0, log: silentLogger });
  const asked: string[] = [];
  const mesh = {
    h1Pool: {
      connection(address: Target, _identity: string, cb: (conn: object | null) => void): void {
        asked.push(targetKey(address));
        queueMicrotask(() => cb(address.port === 9001 ? {} : null));
      },
    },
  } as unknown as MeshOutbound;
  const outcomes = await warmUp(partsOf(d, { mesh }), [{ target: WEB, http1: true }], 1000);
  assert.equal(outcomes.get(targetKey(WEB)), 'partial');
  assert.deepEqual(asked.sort(), ['127.0.0.1:9001', '127.0.0.1:9002']);
  d.close();
});

test('the warm-up pick leaves no request counted on the endpoint', async () => {
  // Two endpoints: after warm-up picked one (and ended its pick), both are equally idle, so
  // picks keep reaching both (a pick left open would count as load and steer every pick away).
  const resolver = new StaticResolver({
    [targetKey(WEB)]: [staticEndpoint('127.0.0.1:9001'), staticEndpoint('127.0.0.1:9002')],
  });
  const d = new ServiceDiscovery({ resolver, failFastMs: 500, idleMs: 0, log: silentLogger });
  const outcomes = await warmUp(partsOf(d), [{ target: WEB, http1: true }], 1000);
  assert.equal(outcomes.get(targetKey(WEB)), 'resolved');
  const seen = new Set<string>();
  for (let i = 0; i < 200; i++) {
    const pick = d.pick(WEB);
    assert.ok(!(pick instanceof Promise) && 'address' in pick);
    seen.add(targetKey(pick.address));
    pick.done(1);
  }
  assert.equal(seen.size, 2);
  d.close();
});

test('no connection ahead for opaque destinations, plain endpoints, or a proxy without identity', async () => {
  const resolver = new StaticResolver({
    [targetKey(WEB)]: [staticEndpoint('127.0.0.1:9001', { meshed: true, identity: ID })],
    'db.default:5432': [staticEndpoint('127.0.0.1:9002')],
  });
  const d = new ServiceDiscovery({ resolver, failFastMs: 500, idleMs: 0, log: silentLogger });
  const { mesh, asked } = fakeMesh();
  const db = { host: 'db.default', port: 5432 };
  const outcomes = await warmUp(
    partsOf(d, { mesh }),
    [
      { target: WEB, http1: false },
      { target: db, http1: true },
    ],
    1000,
  );
  assert.equal(outcomes.get(targetKey(WEB)), 'resolved');
  assert.equal(outcomes.get(targetKey(db)), 'resolved');
  assert.deepEqual(asked, []);
  const noIdentity = await warmUp(partsOf(d), [{ target: WEB, http1: true }], 1000);
  assert.equal(noIdentity.get(targetKey(WEB)), 'resolved');
  d.close();
});

test('an unreachable endpoint, a service without endpoints and direct targets are reported as such', async () => {
  const resolver = new StaticResolver({
    [targetKey(WEB)]: [staticEndpoint('127.0.0.1:9001', { meshed: true, identity: ID })],
    'empty.default:80': [],
  });
  const d = new ServiceDiscovery({ resolver, failFastMs: 200, idleMs: 0, log: silentLogger });
  const { mesh } = fakeMesh(false);
  const gone = { host: 'empty.default', port: 80 }; // a service without endpoints
  const direct = { host: '127.0.0.1', port: 9003 };
  const unknown = { host: 'other.example', port: 80 }; // not a service: discovery sends it direct
  const outcomes = await warmUp(
    partsOf(d, { mesh }),
    [
      { target: WEB, http1: true },
      { target: gone, http1: true },
      { target: direct, http1: true },
      { target: unknown, http1: true },
    ],
    2000,
  );
  assert.equal(outcomes.get(targetKey(WEB)), 'unreachable');
  assert.equal(outcomes.get(targetKey(gone)), 'unresolved');
  assert.equal(outcomes.get(targetKey(direct)), 'direct');
  assert.equal(outcomes.get(targetKey(unknown)), 'direct');
  d.close();
});

test('a control plane that never answers costs at most the budget, and is logged', async () => {
  const silent: Resolver = { resolve: (): Resolution => ({ cancel: () => {} }) };
  const d = new ServiceDiscovery({ resolver: silent, failFastMs: 2000, idleMs: 0, log: silentLogger });
  const lines: string[] = [];
  const log = { ...silentLogger, info: (msg: string) => void lines.push(msg) } as Logger;
  const started = Date.now();
  const outcomes = await warmUp(partsOf(d, { log }), [{ target: WEB, http1: true }], 150);
  const took = Date.now() - started;
  assert.ok(took < 1500, `warm-up took ${took} ms with a 150 ms budget`);
  assert.equal(outcomes.get(targetKey(WEB)), 'timeout');
  assert.equal(lines.length, 1);
  assert.match(lines[0]!, /not ready yet/);
  d.close();
});
