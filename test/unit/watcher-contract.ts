// The shared contract of discovery watchers (src/control/discovery/watcher.ts): every source (the
// local state folder, the Kubernetes API) must pass it. `runWatcherContract(name, makeFixture)`
// registers node:test tests; the fixture gives a fresh, empty source per test and the means to
// create, change and delete services and endpoints in it. Waits are event-driven with a timeout,
// so sources that apply changes eventually (Kubernetes informers) pass as well as immediate ones.
// Address subscriptions (Watcher.subscribeAddress) are part of it: an unknown address is itself, a
// workload's address that workload as its service describes it, and, for sources with virtual IPs
// (Kubernetes ClusterIPs), a service's IP that service port.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type {
  AddressKey,
  Endpoint,
  ServicePortKey,
  Subscription,
  Update,
  Watcher,
} from '../../src/control/discovery/watcher.ts';

export interface ContractServicePort {
  readonly port: number;
  /** The endpoints' port; default: the same as `port`. */
  readonly targetPort?: number;
}

export interface ContractEndpoint {
  /** A distinct address per endpoint (loopback 127.0.0.x or 198.18.0.0/15; no traffic is sent). */
  readonly ip: string;
  /** The port the endpoint listens on (the service's target port). */
  readonly port: number;
  readonly ready: boolean;
  /** A proxy runs beside it (default false); its identity is then the source's to name. */
  readonly meshed?: boolean;
}

export interface WatcherFixture {
  readonly watcher: Watcher;
  /** Creates or replaces a service with these ports (and a virtual IP, where the source has them). */
  setService(
    namespace: string,
    name: string,
    ports: readonly ContractServicePort[],
    options?: { readonly clusterIP?: string },
  ): Promise<void>;
  deleteService(namespace: string, name: string): Promise<void>;
  /** Creates or replaces endpoint `id` of a service (a workload, a pod). */
  setEndpoint(namespace: string, service: string, id: string, endpoint: ContractEndpoint): Promise<void>;
  deleteEndpoint(namespace: string, service: string, id: string): Promise<void>;
  /** Releases everything (closes the watcher too). */
  close(): Promise<void>;
}

export interface WatcherContractOptions {
  /** How long to wait for an expected update. Default 5000 ms. */
  readonly timeoutMs?: number;
  /** Whether the source's services have virtual IPs (ClusterIPs); without, those cases do not apply. */
  readonly virtualIps?: boolean;
}

/** Follows one subscription: every update in order, and the endpoint set they add up to. */
class Recorder {
  readonly updates: Update[] = [];
  /** Address key -> endpoint; null: does-not-exist; undefined: nothing received yet. */
  state: Map<string, Endpoint> | null | undefined = undefined;
  readonly #waiters = new Set<() => void>();
  readonly #timeoutMs: number;

  constructor(timeoutMs: number) {
    this.#timeoutMs = timeoutMs;
  }

  readonly listener = (update: Update): void => {
    this.updates.push(update);
    switch (update.kind) {
      case 'reset':
        this.state = new Map(update.endpoints.map((e) => [key(e), e]));
        break;
      case 'add':
        assert.ok(this.state instanceof Map, 'add before reset');
        for (const e of update.endpoints) this.state.set(key(e), e);
        break;
      case 'remove':
        assert.ok(this.state instanceof Map, 'remove before reset');
        for (const a of update.addresses) this.state.delete(a);
        break;
      case 'does-not-exist':
        this.state = null;
        break;
    }
    for (const waiter of this.#waiters) waiter();
  };

  /** The sorted address keys of the current set, or "does-not-exist" / "nothing". */
  describe(): string[] | string {
    if (this.state === undefined) return 'nothing';
    if (this.state === null) return 'does-not-exist';
    return Array.from(this.state.keys()).sort();
  }

  /** Waits until `predicate` holds (checked now and after every update). */
  until(what: string, predicate: () => boolean): Promise<void> {
    if (predicate()) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const check = (): void => {
        if (!predicate()) return;
        this.#waiters.delete(check);
        clearTimeout(timer);
        resolve();
      };
      const timer = setTimeout(() => {
        this.#waiters.delete(check);
        reject(new Error(`timed out waiting for ${what}; updates: ${JSON.stringify(this.updates)}`));
      }, this.#timeoutMs);
      this.#waiters.add(check);
    });
  }

  untilEndpoints(expected: readonly string[]): Promise<void> {
    const want = [...expected].sort();
    return this.until(`endpoints ${want.join(',')}`, () => {
      const got = this.describe();
      return Array.isArray(got) && got.length === want.length && got.every((k, i) => k === want[i]);
    });
  }

  untilDoesNotExist(): Promise<void> {
    return this.until('does-not-exist', () => this.state === null);
  }

  /** Waits until the set is exactly one endpoint for which `predicate` holds. */
  untilOnly(what: string, predicate: (e: Endpoint) => boolean): Promise<Endpoint> {
    const only = (): Endpoint | undefined =>
      this.state instanceof Map && this.state.size === 1 ? [...this.state.values()][0] : undefined;
    return this.until(what, () => {
      const e = only();
      return e !== undefined && predicate(e);
    }).then(() => only() as Endpoint);
  }
}

/** An address as its own endpoint: what a source answers for an address it does not know. */
function isPlain(e: Endpoint, address: AddressKey): boolean {
  return (
    e.address.host === address.host &&
    e.address.port === address.port &&
    !e.meshed &&
    e.identity === null &&
    e.protocolHint === 'unknown' &&
    Object.keys(e.labels).length === 0
  );
}

function key(e: Endpoint): string {
  return e.address.host.includes(':')
    ? `[${e.address.host}]:${e.address.port}`
    : `${e.address.host}:${e.address.port}`;
}

export function runWatcherContract(
  name: string,
  makeFixture: () => Promise<WatcherFixture>,
  options: WatcherContractOptions = {},
): void {
  const timeoutMs = options.timeoutMs ?? 5000;
  const ns = 'contract';
  const web: ServicePortKey = { namespace: ns, name: 'web', port: 80 };

  async function setup(t: { after(fn: () => Promise<void>): void }): Promise<WatcherFixture> {
    const fixture = await makeFixture();
    t.after(() => fixture.close());
    return fixture;
  }

  function watch(fixture: WatcherFixture, k: ServicePortKey = web) {
    const recorder = new Recorder(timeoutMs);
    const subscription = fixture.watcher.subscribe(k, recorder.listener);
    return { recorder, subscription };
  }

  function watchAddress(fixture: WatcherFixture, address: AddressKey) {
    const recorder = new Recorder(timeoutMs);
    assert.ok(fixture.watcher.subscribeAddress, 'the watcher can subscribe to addresses');
    const subscription: Subscription = fixture.watcher.subscribeAddress(address, recorder.listener);
    return { recorder, subscription };
  }

  /** Only the first update of an address subscription is a reset, and none says does-not-exist. */
  function assertAddressStream(recorder: Recorder): void {
    assert.equal(recorder.updates[0]?.kind, 'reset', JSON.stringify(recorder.updates));
    assert.ok(
      recorder.updates.slice(1).every((u) => u.kind === 'add' || u.kind === 'remove'),
      `only deltas after the reset: ${JSON.stringify(recorder.updates)}`,
    );
  }

  test(`${name}: the first update is a reset with the current ready endpoints`, async (t) => {
    const f = await setup(t);
    await f.setService(ns, 'web', [{ port: 80, targetPort: 8080 }]);
    await f.setEndpoint(ns, 'web', 'a', { ip: '127.0.0.11', port: 8080, ready: true });
    await f.setEndpoint(ns, 'web', 'b', { ip: '127.0.0.12', port: 8080, ready: true });
    await f.watcher.ready();
    // The source may apply the writes after ready(): wait for a subscriber to see both, then check
    // that a fresh subscription starts with exactly one reset holding them.
    await watch(f).recorder.untilEndpoints(['127.0.0.11:8080', '127.0.0.12:8080']);
    const { recorder } = watch(f);
    assert.equal(recorder.updates.length, 0, 'no update from inside subscribe');
    await recorder.untilEndpoints(['127.0.0.11:8080', '127.0.0.12:8080']);
    assert.equal(recorder.updates.length, 1, 'one update holds the whole current set');
    assert.equal(recorder.updates[0]?.kind, 'reset');
    const first = recorder.updates[0];
    assert.ok(first?.kind === 'reset');
    const a = first.endpoints.find((e) => e.address.host === '127.0.0.11');
    assert.ok(a !== undefined);
    assert.equal(a.address.port, 8080);
    assert.equal(a.labels.namespace, ns);
    assert.equal(a.labels.service, 'web');
  });

  test(`${name}: a service without endpoints starts with an empty reset`, async (t) => {
    const f = await setup(t);
    await f.setService(ns, 'web', [{ port: 80 }]);
    await f.watcher.ready();
    const { recorder } = watch(f);
    await recorder.until('a first update', () => recorder.updates.length > 0);
    // A source that saw the service late may first say does-not-exist; it must end in a reset.
    await recorder.untilEndpoints([]);
    assert.equal(recorder.updates.at(-1)?.kind, 'reset');
  });

  test(`${name}: changes arrive as add and remove`, async (t) => {
    const f = await setup(t);
    await f.setService(ns, 'web', [{ port: 80, targetPort: 8080 }]);
    await f.setEndpoint(ns, 'web', 'a', { ip: '127.0.0.11', port: 8080, ready: true });
    await f.watcher.ready();
    const { recorder } = watch(f);
    await recorder.untilEndpoints(['127.0.0.11:8080']);
    const before = recorder.updates.length;
    await f.setEndpoint(ns, 'web', 'b', { ip: '127.0.0.12', port: 8080, ready: true });
    await recorder.untilEndpoints(['127.0.0.11:8080', '127.0.0.12:8080']);
    await f.deleteEndpoint(ns, 'web', 'a');
    await recorder.untilEndpoints(['127.0.0.12:8080']);
    const later = recorder.updates.slice(before);
    assert.ok(
      later.some((u) => u.kind === 'add' && u.endpoints.some((e) => key(e) === '127.0.0.12:8080')),
      `an add for the new endpoint: ${JSON.stringify(later)}`,
    );
    assert.ok(
      later.some((u) => u.kind === 'remove' && u.addresses.includes('127.0.0.11:8080')),
      `a remove for the deleted endpoint: ${JSON.stringify(later)}`,
    );
    assert.ok(!later.some((u) => u.kind === 'reset' || u.kind === 'does-not-exist'), 'only deltas');
  });

  test(`${name}: endpoints that are not ready are not in the set`, async (t) => {
    const f = await setup(t);
    await f.setService(ns, 'web', [{ port: 80, targetPort: 8080 }]);
    await f.setEndpoint(ns, 'web', 'a', { ip: '127.0.0.11', port: 8080, ready: true });
    await f.setEndpoint(ns, 'web', 'b', { ip: '127.0.0.12', port: 8080, ready: false });
    await f.watcher.ready();
    const { recorder } = watch(f);
    await recorder.untilEndpoints(['127.0.0.11:8080']);
    await f.setEndpoint(ns, 'web', 'b', { ip: '127.0.0.12', port: 8080, ready: true });
    await recorder.untilEndpoints(['127.0.0.11:8080', '127.0.0.12:8080']);
    await f.setEndpoint(ns, 'web', 'a', { ip: '127.0.0.11', port: 8080, ready: false });
    await recorder.untilEndpoints(['127.0.0.12:8080']);
  });

  test(`${name}: an unknown service does not exist, and a deleted one stops existing`, async (t) => {
    const f = await setup(t);
    await f.setService(ns, 'web', [{ port: 80 }]);
    await f.watcher.ready();
    const unknown = watch(f, { namespace: ns, name: 'nothing-here', port: 80 });
    const unknownPort = watch(f, { namespace: ns, name: 'web', port: 81 });
    await unknown.recorder.untilDoesNotExist();
    assert.equal(unknown.recorder.updates[0]?.kind, 'does-not-exist');
    await unknownPort.recorder.untilDoesNotExist();
    const { recorder } = watch(f);
    await recorder.untilEndpoints([]);
    await f.deleteService(ns, 'web');
    await recorder.untilDoesNotExist();
  });

  test(`${name}: a service created after subscribe goes from does-not-exist to a reset`, async (t) => {
    const f = await setup(t);
    await f.watcher.ready();
    const { recorder } = watch(f);
    await recorder.untilDoesNotExist();
    await f.setEndpoint(ns, 'web', 'a', { ip: '127.0.0.11', port: 8080, ready: true });
    await f.setService(ns, 'web', [{ port: 80, targetPort: 8080 }]);
    await recorder.untilEndpoints(['127.0.0.11:8080']);
    const afterDne = recorder.updates.slice(
      recorder.updates.findIndex((u) => u.kind === 'does-not-exist') + 1,
    );
    assert.equal(afterDne[0]?.kind, 'reset', 'the first update after does-not-exist is a reset');
  });

  test(`${name}: unsubscribe stops the updates`, async (t) => {
    const f = await setup(t);
    await f.setService(ns, 'web', [{ port: 80, targetPort: 8080 }]);
    await f.watcher.ready();
    const gone = watch(f);
    const immediate = watch(f);
    immediate.subscription.unsubscribe(); // before any delivery: must never be called
    await gone.recorder.untilEndpoints([]);
    gone.subscription.unsubscribe();
    const seen = gone.recorder.updates.length;
    // A second subscriber marks when the change has been delivered.
    const marker = watch(f);
    await marker.recorder.untilEndpoints([]);
    await f.setEndpoint(ns, 'web', 'a', { ip: '127.0.0.11', port: 8080, ready: true });
    await marker.recorder.untilEndpoints(['127.0.0.11:8080']);
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(gone.recorder.updates.length, seen);
    assert.equal(immediate.recorder.updates.length, 0);
  });

  test(`${name}: many subscribers all get every change`, async (t) => {
    const f = await setup(t);
    await f.setService(ns, 'web', [{ port: 80, targetPort: 8080 }]);
    await f.watcher.ready();
    const recorders = Array.from({ length: 25 }, () => watch(f).recorder);
    await Promise.all(recorders.map((r) => r.untilEndpoints([])));
    await f.setEndpoint(ns, 'web', 'a', { ip: '127.0.0.11', port: 8080, ready: true });
    await Promise.all(recorders.map((r) => r.untilEndpoints(['127.0.0.11:8080'])));
    await f.deleteEndpoint(ns, 'web', 'a');
    await Promise.all(recorders.map((r) => r.untilEndpoints([])));
  });

  test(`${name}: an address nobody has is answered with itself, unmeshed`, async (t) => {
    const f = await setup(t);
    await f.setService(ns, 'web', [{ port: 80, targetPort: 8080 }]);
    await f.setEndpoint(ns, 'web', 'a', { ip: '127.0.0.11', port: 8080, ready: true });
    await f.watcher.ready();
    for (const address of [
      { host: '198.18.7.7', port: 9999 },
      { host: '::1', port: 9999 },
    ]) {
      const { recorder } = watchAddress(f, address);
      assert.equal(recorder.updates.length, 0, 'no update from inside subscribeAddress');
      await recorder.untilOnly('the address itself', (e) => isPlain(e, address));
      assert.equal(recorder.updates.length, 1);
      assertAddressStream(recorder);
    }
  });

  test(`${name}: a workload's address and port is that endpoint, and follows it`, async (t) => {
    const f = await setup(t);
    const address = { host: '127.0.0.11', port: 8080 };
    await f.setService(ns, 'web', [{ port: 80, targetPort: 8080 }]);
    await f.setEndpoint(ns, 'web', 'a', { ip: '127.0.0.11', port: 8080, ready: true, meshed: true });
    await f.watcher.ready();
    const service = watch(f).recorder;
    const described = await service.untilOnly('the meshed endpoint', (e) => e.meshed);
    const { recorder } = watchAddress(f, address);
    const meshed = await recorder.untilOnly('the meshed workload', (e) => e.meshed);
    assert.deepEqual(meshed.address, address);
    assert.equal(meshed.identity, described.identity, 'the identity the service gives it');
    assert.ok(meshed.identity !== null && meshed.identity.startsWith('spiffe://'), String(meshed.identity));
    assert.equal(meshed.protocolHint, described.protocolHint);
    assert.equal(meshed.labels.namespace, ns);

    // Not ready: the address is nobody's endpoint, so it is itself again.
    await f.setEndpoint(ns, 'web', 'a', { ip: '127.0.0.11', port: 8080, ready: false, meshed: true });
    await recorder.untilOnly('the plain address while not ready', (e) => isPlain(e, address));
    // Ready again, without a proxy now: described, unmeshed.
    await f.setEndpoint(ns, 'web', 'a', { ip: '127.0.0.11', port: 8080, ready: true });
    await recorder.untilOnly('the unmeshed workload', (e) => !e.meshed && e.labels.namespace === ns);
    await f.setEndpoint(ns, 'web', 'a', { ip: '127.0.0.11', port: 8080, ready: true, meshed: true });
    await recorder.untilOnly('meshed again', (e) => e.meshed && e.identity === described.identity);
    // Gone: the plain address.
    await f.deleteEndpoint(ns, 'web', 'a');
    await recorder.untilOnly('the plain address once gone', (e) => isPlain(e, address));
    assertAddressStream(recorder);
  });

  const virtualIpTest = options.virtualIps === false ? (): void => {} : test;
  virtualIpTest(`${name}: a service's virtual IP and port is that service port`, async (t) => {
    const f = await setup(t);
    const clusterIP = '198.18.0.10';
    await f.setService(ns, 'web', [{ port: 80, targetPort: 8080 }], { clusterIP });
    await f.setEndpoint(ns, 'web', 'a', { ip: '127.0.0.11', port: 8080, ready: true, meshed: true });
    await f.watcher.ready();
    const byName = watch(f).recorder;
    await byName.untilEndpoints(['127.0.0.11:8080']);
    const { recorder } = watchAddress(f, { host: clusterIP, port: 80 });
    await recorder.untilEndpoints(['127.0.0.11:8080']);
    assert.deepEqual(
      recorder.state?.get('127.0.0.11:8080'),
      byName.state?.get('127.0.0.11:8080'),
      'the endpoint exactly as the service name gives it',
    );
    // Changes arrive as they do for the name.
    await f.setEndpoint(ns, 'web', 'b', { ip: '127.0.0.12', port: 8080, ready: true });
    await recorder.untilEndpoints(['127.0.0.11:8080', '127.0.0.12:8080']);
    await f.deleteEndpoint(ns, 'web', 'a');
    await recorder.untilEndpoints(['127.0.0.12:8080']);
    await f.deleteEndpoint(ns, 'web', 'b');
    await recorder.untilEndpoints([]);
    assertAddressStream(recorder);
    // A port the service does not have is no service port: the address itself.
    const otherPort = watchAddress(f, { host: clusterIP, port: 81 }).recorder;
    await otherPort.untilOnly('the plain address', (e) => isPlain(e, { host: clusterIP, port: 81 }));
    // Once the service is gone, the IP is nobody's.
    await f.deleteService(ns, 'web');
    await recorder.untilOnly('the plain address', (e) => isPlain(e, { host: clusterIP, port: 80 }));
    assertAddressStream(recorder);
  });

  test(`${name}: unsubscribing an address stops its updates`, async (t) => {
    const f = await setup(t);
    await f.setService(ns, 'web', [{ port: 80, targetPort: 8080 }]);
    await f.watcher.ready();
    const address = { host: '127.0.0.11', port: 8080 };
    const gone = watchAddress(f, address);
    await gone.recorder.untilOnly('the plain address', (e) => isPlain(e, address));
    gone.subscription.unsubscribe();
    const marker = watchAddress(f, address);
    await marker.recorder.untilOnly('the plain address', (e) => isPlain(e, address));
    await f.setEndpoint(ns, 'web', 'a', { ip: '127.0.0.11', port: 8080, ready: true, meshed: true });
    await marker.recorder.untilOnly('the meshed workload', (e) => e.meshed);
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(gone.recorder.updates.length, 1);
  });
}
