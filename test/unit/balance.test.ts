// The concrete level of the outbound stack (src/proxy/outbound/balance.ts): the pick, its late
// answer, the retry on another endpoint and the report back to the balancer, as the HTTP/1,
// HTTP/2 and TCP paths all use them. Discovery is a scripted fake; the sockets are real
// (loopback: one port that accepts, one that refuses).
import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import type { Endpoint } from '../../src/core/endpoints.ts';
import type { Target } from '../../src/core/target.ts';
import type { Pick, PickOutcome } from '../../src/proxy/outbound/discovery.ts';
import {
  connectBalanced,
  pickEndpoint,
  retriesElsewhere,
  type Discovery,
  type EndpointOutcome,
  type MeshTcpConnector,
} from '../../src/proxy/outbound/balance.ts';

const SERVICE: Target = { host: 'web.default.svc.cluster.local', port: 80 };

/** A fake discovery over fixed endpoint keys; records every pick and every done(). */
function fakeDiscovery(
  addresses: Record<string, Target>,
  opts: { late?: boolean; logical?: boolean; meshed?: boolean } = {},
): Discovery & { picks: (string | null)[]; open: Map<string, number>; rtts: number[] } {
  const open = new Map<string, number>();
  const picks: (string | null)[] = [];
  const rtts: number[] = [];
  const keys = Object.keys(addresses);
  const pickOne = (avoid: string | null): PickOutcome => {
    picks.push(avoid);
    if (keys.length === 0) return { error: 'no-endpoints', detail: 'none' };
    // Like the balancer: another endpoint than `avoid` when there is one.
    const key = keys.find((k) => k !== avoid) ?? keys[0]!;
    open.set(key, (open.get(key) ?? 0) + 1);
    const endpoint: Endpoint = {
      address: addresses[key]!,
      weight: 1,
      labels: {},
      meshed: opts.meshed ?? false,
      identity: opts.meshed === true ? `spiffe://test/${key}` : null,
      protocolHint: 'unknown',
    };
    let done = false;
    return {
      address: addresses[key]!,
      endpoint,
      key,
      done(rtt?: number) {
        assert.equal(done, false, `done() twice for ${key}`);
        done = true;
        open.set(key, open.get(key)! - 1);
        if (rtt !== undefined) rtts.push(rtt);
      },
    };
  };
  return {
    picks,
    open,
    rtts,
    isLogical: () => opts.logical ?? true,
    pick: (_t: Target, avoid: string | null) =>
      opts.late === true
        ? new Promise<PickOutcome>((r) => setTimeout(() => r(pickOne(avoid)), 1))
        : pickOne(avoid),
  };
}

function outcomeOf(
  discovery: Discovery | null,
  target: Target,
  failed: Pick | null,
  otherOnly = true,
): Promise<EndpointOutcome> {
  return new Promise((resolve) =>
    pickEndpoint(discovery, target, failed, { onEndpoint: resolve }, otherOnly),
  );
}

const closedPort = async (): Promise<number> => {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
};

describe('pickEndpoint', () => {
  it('a target discovery does not balance goes where routing sent it, and has nowhere else to go', async () => {
    const d = fakeDiscovery({ a: { host: '127.0.0.1', port: 1 } }, { logical: false });
    const first = await outcomeOf(d, SERVICE, null);
    assert.ok(typeof first === 'object' && !('error' in first));
    assert.deepEqual(first.address, SERVICE);
    assert.equal(first.key, null);
    assert.equal(await outcomeOf(d, SERVICE, first), 'no-other-endpoint');
    // A re-send that may go back to the same place (otherOnly false) does.
    const again = await outcomeOf(d, SERVICE, first, false);
    assert.ok(typeof again === 'object' && !('error' in again) && again.key === null);
    assert.equal(d.picks.length, 0, 'discovery was never asked');
    // No discovery at all is the same.
    const none = await outcomeOf(null, SERVICE, null);
    assert.ok(typeof none === 'object' && !('error' in none) && none.key === null);
  });

  for (const late of [false, true]) {
    it(`${late ? 'a late answer' : 'an answer known at once'}: a retry avoids the failed endpoint, which stays busy until then`, async () => {
      const d = fakeDiscovery(
        { a: { host: '127.0.0.1', port: 1 }, b: { host: '127.0.0.1', port: 2 } },
        { late },
      );
      const first = (await outcomeOf(d, SERVICE, null)) as Pick;
      assert.equal(first.key, 'a');
      const retry = (await outcomeOf(d, SERVICE, first)) as Pick;
      assert.equal(retry.key, 'b');
      assert.deepEqual(d.picks, [null, 'a']);
      assert.equal(d.open.get('a'), 0, 'the failed pick was reported');
      assert.equal(d.open.get('b'), 1);
      retry.done();
    });

    it(`${late ? 'a late answer' : 'an answer known at once'}: a retry that finds only the failed endpoint answers no-other-endpoint, releasing both`, async () => {
      const d = fakeDiscovery({ a: { host: '127.0.0.1', port: 1 } }, { late });
      const first = (await outcomeOf(d, SERVICE, null)) as Pick;
      assert.equal(await outcomeOf(d, SERVICE, first), 'no-other-endpoint');
      assert.equal(d.open.get('a'), 0);
      // otherOnly false: the same endpoint again is an answer.
      const first2 = (await outcomeOf(d, SERVICE, null)) as Pick;
      const same = (await outcomeOf(d, SERVICE, first2, false)) as Pick;
      assert.equal(same.key, 'a');
      assert.equal(d.open.get('a'), 1);
    });
  }

  it('a discovery that throws or rejects still gets the exchange an answer', async () => {
    const throwing: Discovery = {
      isLogical: () => true,
      pick: () => {
        throw new Error('boom');
      },
    };
    assert.deepEqual(await outcomeOf(throwing, SERVICE, null), {
      error: 'no-endpoints',
      detail: 'discovery failed',
    });
    const rejecting: Discovery = { isLogical: () => true, pick: () => Promise.reject(new Error('boom')) };
    assert.deepEqual(await outcomeOf(rejecting, SERVICE, null), {
      error: 'no-endpoints',
      detail: 'discovery failed',
    });
  });

  it('retries elsewhere only the first connect failure of a balanced pick, never for no-identity', () => {
    const reasons = [
      'connect-failed',
      'connect-timeout',
      'tls-handshake-failed',
      'identity-mismatch',
      'no-identity',
    ] as const;
    fc.assert(
      fc.property(
        fc.constantFrom(...reasons),
        fc.boolean(),
        fc.option(fc.string(), { nil: null }),
        (reason, retried, key) => {
          const pick: Pick = { address: SERVICE, endpoint: null, key, done: () => {} };
          assert.equal(
            retriesElsewhere(pick, reason, retried),
            !retried && key !== null && reason !== 'no-identity',
          );
        },
      ),
    );
  });
});

describe('connectBalanced', () => {
  let server: net.Server;
  let live: Target;
  let dead: Target;
  const accepted: net.Socket[] = [];
  before(async () => {
    server = net.createServer((s) => accepted.push(s));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    live = { host: '127.0.0.1', port: (server.address() as net.AddressInfo).port };
    dead = { host: '127.0.0.1', port: await closedPort() };
  });
  after(() => {
    for (const s of accepted) s.destroy();
    server.close();
  });

  const connect = (d: Discovery) =>
    new Promise<{ socket: net.Socket | null; pick: Pick | null; reason: string | null }>((resolve) =>
      connectBalanced(d, SERVICE, 2000, (socket, pick, reason) => resolve({ socket, pick, reason })),
    );

  it('a refused connect goes once to another endpoint; the connection holds its pick until it closes', async () => {
    const d = fakeDiscovery({ dead, live });
    const { socket, pick, reason } = await connect(d);
    assert.equal(reason, null);
    assert.equal(pick?.key, 'live');
    assert.deepEqual(d.picks, [null, 'dead']);
    assert.equal(d.open.get('dead'), 0);
    assert.equal(d.open.get('live'), 1, 'counted as load while open');
    socket!.destroy();
    await new Promise((r) => socket!.once('close', r));
    assert.equal(d.open.get('live'), 0);
    assert.equal(d.rtts.length, 1, 'reported with its connect time');
  });

  it('with one endpoint, a failed connect is answered at once, not tried against the same endpoint again', async () => {
    // Before outbound/balance.ts the TCP and HTTP/1 paths asked discovery again and connected to
    // whatever it returned, the same endpoint included: a single endpoint that timed out cost
    // the client two connect timeouts. Counted through a mesh connector that always times out.
    const d = fakeDiscovery({ dead }, { meshed: true });
    const connects: Target[] = [];
    const mesh: MeshTcpConnector = {
      connectTcp(address, identity, _timeoutMs, cb) {
        assert.equal(identity, 'spiffe://test/dead');
        connects.push(address);
        setImmediate(() => cb(null, 'connect-timeout'));
        return { cancel() {} };
      },
    };
    const result = await new Promise<{ socket: net.Socket | null; reason: string | null }>((resolve) =>
      connectBalanced(d, SERVICE, 2000, (socket, _pick, reason) => resolve({ socket, reason }), mesh),
    );
    assert.equal(result.socket, null);
    assert.equal(result.reason, 'connect-timeout');
    assert.equal(connects.length, 1, 'one connect, not two to the same endpoint');
    assert.deepEqual(d.picks, [null, 'dead']);
    assert.equal(d.open.get('dead'), 0);
  });

  it('cancelled while discovery still waits: the late pick is reported and the callback never runs', async () => {
    const d = fakeDiscovery({ live }, { late: true });
    let called = false;
    const attempt = connectBalanced(d, SERVICE, 2000, () => (called = true));
    attempt.cancel();
    attempt.cancel();
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(called, false);
    assert.deepEqual(d.picks, [null], 'the pick did arrive');
    assert.equal(d.open.get('live'), 0);
  });
});
