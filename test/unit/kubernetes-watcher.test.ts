// Tests for the Kubernetes discovery watcher (src/control/discovery/kubernetes.ts) against the fake
// API server, driven by the real @kubernetes/client-node informers: the shared watcher contract,
// the translation of kubectl-shaped fixtures (ports, readiness, labels, meshed, identity, opaque),
// dropped watches and a 410 relist without lost, duplicated or spurious updates, and a property:
// any sequence of EndpointSlice changes ends with the subscriber's set equal to a model's.
// Address subscriptions: the fixtures' ClusterIPs and pod IPs, pods that change, host-network and
// finished pods, IPv6 spellings, and a property of the address index against a model.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isDeepStrictEqual } from 'node:util';
import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import type { V1Pod } from '@kubernetes/client-node';
import {
  KubernetesWatcher,
  buildAddressIndex,
  isPodReady,
  kubeConfigForServer,
} from '../../src/control/discovery/kubernetes.ts';
import type { AddressKey, Endpoint, ServicePortKey, Update } from '../../src/control/discovery/watcher.ts';
import { FakeKubeServer, type KubeObject } from '../fake-kube/server.ts';
import { runWatcherContract, type ContractEndpoint, type ContractServicePort } from './watcher-contract.ts';

const TRUST_DOMAIN = 'cluster.local';
const fixture = (name: string): string =>
  readFileSync(new URL(`../fake-kube/fixtures/${name}`, import.meta.url), 'utf8');
const key = (e: Endpoint): string => `${e.address.host}:${e.address.port}`;

async function startCluster(t: { after(fn: () => Promise<void>): void }, fixtures: readonly string[] = []) {
  const server = new FakeKubeServer({ bookmarkIntervalMs: 50 });
  await server.start();
  for (const name of fixtures) server.applyYaml(fixture(name));
  const watcher = new KubernetesWatcher({
    kubeConfig: kubeConfigForServer(server.url),
    trustDomain: TRUST_DOMAIN,
    retryDelayMs: 50,
  });
  t.after(async () => {
    await watcher.close();
    await server.close();
  });
  await watcher.ready();
  return { server, watcher };
}

/**
 * Follows a subscription and checks the stream as it comes: a reset only first or after
 * does-not-exist, adds only for new or changed endpoints, removes only for present ones.
 */
class Follower {
  readonly updates: Update[] = [];
  state: Map<string, Endpoint> | null | undefined = undefined;
  /** The address keys after each update. */
  readonly history: string[][] = [];
  readonly violations: string[] = [];

  readonly listener = (update: Update): void => {
    this.updates.push(update);
    const state = this.state;
    if (update.kind === 'reset') {
      if (state instanceof Map) this.violations.push(`reset while following: ${JSON.stringify(update)}`);
      this.state = new Map(update.endpoints.map((e) => [key(e), e]));
    } else if (update.kind === 'does-not-exist') {
      this.state = null;
    } else if (!(state instanceof Map)) {
      this.violations.push(`${update.kind} before reset`);
    } else if (update.kind === 'add') {
      for (const e of update.endpoints) {
        if (JSON.stringify(state.get(key(e))) === JSON.stringify(e))
          this.violations.push(`duplicate add ${key(e)}`);
        state.set(key(e), e);
      }
    } else {
      for (const address of update.addresses) {
        if (!state.delete(address)) this.violations.push(`remove of absent ${address}`);
      }
    }
    this.history.push(this.keys());
  };

  keys(): string[] {
    return this.state instanceof Map ? [...this.state.keys()].sort() : [];
  }

  async until(what: string, predicate: () => boolean, timeoutMs = 8000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!predicate()) {
      if (Date.now() > deadline)
        assert.fail(`timed out waiting for ${what}; updates: ${JSON.stringify(this.updates)}`);
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
  }

  untilKeys(expected: readonly string[], timeoutMs?: number): Promise<void> {
    const want = JSON.stringify([...expected].sort());
    return this.until(
      want,
      () => this.state instanceof Map && JSON.stringify(this.keys()) === want,
      timeoutMs,
    );
  }
}

function follow(watcher: KubernetesWatcher, subscriptionKey: ServicePortKey): Follower {
  const follower = new Follower();
  watcher.subscribe(subscriptionKey, follower.listener);
  return follower;
}

function followAddress(watcher: KubernetesWatcher, address: AddressKey): Follower {
  const follower = new Follower();
  watcher.subscribeAddress(address, follower.listener);
  return follower;
}

// ---- The shared contract: the fixture plays the EndpointSlice controller (a slice per endpoint).

runWatcherContract('kubernetes', async () => {
  const server = new FakeKubeServer({ bookmarkIntervalMs: 50 });
  await server.start();
  const watcher = new KubernetesWatcher({
    kubeConfig: kubeConfigForServer(server.url),
    trustDomain: TRUST_DOMAIN,
    retryDelayMs: 50,
  });
  const services = new Map<string, readonly ContractServicePort[]>();
  // The pod behind each endpoint: what address subscriptions look up by IP.
  const applyPod = (namespace: string, service: string, id: string, endpoint: ContractEndpoint): void => {
    server.apply({
      kind: 'Pod',
      metadata: {
        name: `${service}-${id}`,
        namespace,
        labels: { app: service },
        annotations: endpoint.meshed === true ? { 'trellis.dev/proxy-injected': 'true' } : {},
      },
      spec: { serviceAccountName: service, containers: [{ name: 'app' }] },
      status: {
        phase: 'Running',
        podIP: endpoint.ip,
        podIPs: [{ ip: endpoint.ip }],
        conditions: [{ type: 'Ready', status: endpoint.ready ? 'True' : 'False' }],
      },
    });
  };
  const endpoints = new Map<
    string,
    { namespace: string; service: string; id: string; endpoint: ContractEndpoint }
  >();
  const portName = (ports: readonly ContractServicePort[], p: ContractServicePort): string | undefined =>
    ports.length === 1 ? undefined : `port-${p.port}`;
  const applySlice = (namespace: string, service: string, id: string, endpoint: ContractEndpoint): void => {
    const ports = services.get(`${namespace}/${service}`) ?? [];
    const matching = ports.filter((p) => (p.targetPort ?? p.port) === endpoint.port);
    server.apply(
      endpointSlice(namespace, service, `${service}-${id}`, {
        ports: (matching.length > 0 ? matching : [undefined]).map((p) => ({
          name: p ? portName(ports, p) : undefined,
          port: endpoint.port,
        })),
        endpoints: [
          {
            addresses: [endpoint.ip],
            conditions: { ready: endpoint.ready },
            targetRef: { kind: 'Pod', name: `${service}-${id}`, namespace },
          },
        ],
      }),
    );
  };
  return {
    watcher,
    async setService(namespace, name, ports, options = {}) {
      services.set(`${namespace}/${name}`, ports);
      server.apply({
        kind: 'Service',
        metadata: { name, namespace },
        spec: {
          ...(options.clusterIP === undefined
            ? {}
            : { clusterIP: options.clusterIP, clusterIPs: [options.clusterIP] }),
          ports: ports.map((p) => ({
            name: portName(ports, p),
            port: p.port,
            targetPort: p.targetPort ?? p.port,
          })),
        },
      });
      for (const e of endpoints.values()) {
        if (e.namespace === namespace && e.service === name)
          applySlice(e.namespace, e.service, e.id, e.endpoint);
      }
    },
    async deleteService(namespace, name) {
      services.delete(`${namespace}/${name}`);
      server.delete('Service', namespace, name);
    },
    async setEndpoint(namespace, service, id, endpoint) {
      endpoints.set(`${namespace}/${service}/${id}`, { namespace, service, id, endpoint });
      applyPod(namespace, service, id, endpoint);
      applySlice(namespace, service, id, endpoint);
    },
    async deleteEndpoint(namespace, service, id) {
      endpoints.delete(`${namespace}/${service}/${id}`);
      server.delete('EndpointSlice', namespace, `${service}-${id}`);
      server.delete('Pod', namespace, `${service}-${id}`);
    },
    async close() {
      await watcher.close();
      await server.close();
    },
  };
});

interface SliceSpec {
  ports: { name?: string | undefined; port: number }[];
  endpoints: { addresses: string[]; conditions?: { ready?: boolean }; targetRef?: object; zone?: string }[];
}

function endpointSlice(namespace: string, service: string, name: string, spec: SliceSpec): KubeObject {
  return {
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: { name, namespace, labels: { 'kubernetes.io/service-name': service } },
    addressType: 'IPv4',
    ...spec,
  };
}

// ---- Translation of the kubectl-shaped fixtures.

test('the fixtures translate to ready endpoints with target ports, labels, identity and hints', async (t) => {
  const { server, watcher } = await startCluster(t, ['web.yaml', 'db.yaml']);
  const web = follow(watcher, { namespace: 'shop', name: 'web', port: 80 });
  const grpc = follow(watcher, { namespace: 'shop', name: 'web', port: 9090 });
  const postgres = follow(watcher, { namespace: 'shop', name: 'db', port: 5432 });
  const metrics = follow(watcher, { namespace: 'shop', name: 'db', port: 9187 });
  await web.untilKeys(['10.244.1.12:8080', '10.244.2.7:8080']);
  const webLabels = (pod: string, zone: string) => ({
    namespace: 'shop',
    service: 'web',
    workload: 'web',
    pod,
    zone,
  });
  assert.deepEqual(web.updates, [
    {
      kind: 'reset',
      endpoints: [
        {
          address: { host: '10.244.1.12', port: 8080 },
          weight: 1,
          labels: webLabels('web-7d4b9c8f5-2xkqp', 'eu-west-1a'),
          meshed: true, // by annotation
          identity: 'spiffe://cluster.local/ns/shop/sa/web',
          protocolHint: 'h2',
        },
        {
          address: { host: '10.244.2.7', port: 8080 },
          weight: 1,
          labels: webLabels('web-7d4b9c8f5-9hzlm', 'eu-west-1b'),
          meshed: true, // by its trellis-proxy container
          identity: 'spiffe://cluster.local/ns/shop/sa/web',
          protocolHint: 'h2',
        },
      ],
    },
  ]);
  await grpc.untilKeys(['10.244.1.12:9090', '10.244.2.7:9090']);
  assert.ok([...(grpc.state as Map<string, Endpoint>).values()].every((e) => e.protocolHint === 'h2'));
  await postgres.untilKeys(['10.244.3.4:5432']);
  assert.deepEqual(postgres.state?.get('10.244.3.4:5432'), {
    address: { host: '10.244.3.4', port: 5432 },
    weight: 1,
    labels: { namespace: 'shop', service: 'db', workload: 'db', pod: 'db-0', zone: 'eu-west-1c' },
    meshed: false,
    identity: null,
    protocolHint: 'opaque', // the Service's config.trellis.dev/opaque-ports names 5432
  });
  await metrics.untilKeys(['10.244.3.4:9187']);
  assert.equal(metrics.state?.get('10.244.3.4:9187')?.protocolHint, 'opaque'); // by appProtocol

  // The real client drove the fake server: a list of each kind, then a watch resuming from it.
  for (const kind of ['Service', 'EndpointSlice', 'Pod']) {
    const requests = server.requests.filter((r) => r.kind === kind);
    assert.equal(requests[0]?.verb, 'list', kind);
    assert.equal(requests[1]?.verb, 'watch', kind);
    assert.ok(Number(requests[1]?.query.resourceVersion) > 100, `${kind} watch resumes from the list`);
    assert.equal(requests[1]?.query.allowWatchBookmarks, 'true');
  }
});

test('readiness changes, a pod that arrives after its slice, and a deleted slice', async (t) => {
  const { server, watcher } = await startCluster(t, ['web.yaml']);
  server.delete('Pod', 'shop', 'web-7d4b9c8f5-qq4rt');
  const web = follow(watcher, { namespace: 'shop', name: 'web', port: 80 });
  await web.untilKeys(['10.244.1.12:8080', '10.244.2.7:8080']);
  const slice = structuredClone(server.get('EndpointSlice', 'shop', 'web-x7k2p')) as KubeObject & SliceSpec;
  slice.endpoints[2]!.conditions = { ready: true };
  server.apply(slice);
  await web.untilKeys(['10.244.1.12:8080', '10.244.2.7:8080', '10.244.2.9:8080']);
  // Its pod is gone from the cache: an unmeshed endpoint until the pod shows up.
  assert.equal(web.state?.get('10.244.2.9:8080')?.meshed, false);
  server.applyYaml(fixture('web.yaml').split('---').at(-1)!);
  await web.until('the refreshed endpoint', () => web.state?.get('10.244.2.9:8080')?.meshed === true);
  assert.equal(web.state?.get('10.244.2.9:8080')?.identity, 'spiffe://cluster.local/ns/shop/sa/web');
  const last = web.updates.at(-1);
  assert.equal(last?.kind, 'add');
  server.delete('EndpointSlice', 'shop', 'web-x7k2p');
  await web.untilKeys([]);
  assert.deepEqual(web.violations, []);
});

// ---- Dropped watches and relists.

test('the watcher follows changes made while its watches were dropped, gracefully or abruptly', async (t) => {
  const { server, watcher } = await startCluster(t, ['web.yaml']);
  const web = follow(watcher, { namespace: 'shop', name: 'web', port: 80 });
  await web.untilKeys(['10.244.1.12:8080', '10.244.2.7:8080']);
  const lists = server.countRequests('list', 'EndpointSlice');
  const slice = structuredClone(server.get('EndpointSlice', 'shop', 'web-x7k2p')) as KubeObject & SliceSpec;

  server.dropWatches();
  slice.endpoints[2]!.conditions = { ready: true };
  server.apply(slice);
  await web.untilKeys(['10.244.1.12:8080', '10.244.2.7:8080', '10.244.2.9:8080']);

  server.dropWatches({ abrupt: true });
  slice.endpoints.splice(1, 1);
  server.apply(slice);
  server.apply(
    endpointSlice('shop', 'web', 'web-extra', {
      ports: [{ name: 'http', port: 8080 }],
      endpoints: [{ addresses: ['10.244.5.5'] }],
    }),
  );
  await web.untilKeys(['10.244.1.12:8080', '10.244.2.9:8080', '10.244.5.5:8080']);
  await web.until('three watches again', () => server.watchCount() === 3);

  assert.equal(
    server.countRequests('list', 'EndpointSlice'),
    lists,
    'resumed from the resource version, no relist',
  );
  assert.deepEqual(web.violations, []);
  assert.equal(web.updates.filter((u) => u.kind === 'reset').length, 1);
});

test('after a 410 relist the subscriber sees only the real difference, never a spurious set', async (t) => {
  const { server, watcher } = await startCluster(t, ['web.yaml', 'db.yaml']);
  const web = follow(watcher, { namespace: 'shop', name: 'web', port: 80 });
  const db = follow(watcher, { namespace: 'shop', name: 'db', port: 5432 });
  await web.untilKeys(['10.244.1.12:8080', '10.244.2.7:8080']);
  await db.untilKeys(['10.244.3.4:5432']);
  const lists = server.countRequests('list', 'EndpointSlice');

  // A rollout while the watcher is cut off: one pod replaced, and a new slice; then the history
  // is compacted, so resuming answers 410 Gone and the informers relist.
  server.dropWatches({ abrupt: true });
  const slice = structuredClone(server.get('EndpointSlice', 'shop', 'web-x7k2p')) as KubeObject & SliceSpec;
  slice.endpoints[1] = { ...slice.endpoints[1]!, addresses: ['10.244.2.44'] };
  server.apply(slice);
  server.apply(
    endpointSlice('shop', 'web', 'web-extra', {
      ports: [{ name: 'http', port: 8080 }],
      endpoints: [{ addresses: ['10.244.5.5'] }],
    }),
  );
  server.compact();
  await web.untilKeys(['10.244.1.12:8080', '10.244.2.44:8080', '10.244.5.5:8080']);
  await web.until('a relist', () => server.countRequests('list', 'EndpointSlice') > lists);

  assert.deepEqual(web.violations, []);
  assert.deepEqual(
    web.updates.map((u) => u.kind),
    ['reset', 'add', 'remove'],
    JSON.stringify(web.updates),
  );
  // The unchanged endpoint never left, and the set was never empty.
  assert.ok(
    web.history.every((keys) => keys.includes('10.244.1.12:8080')),
    JSON.stringify(web.history),
  );
  // db did not change: the relist told its subscriber nothing.
  await new Promise((resolve) => setTimeout(resolve, 100));
  assert.equal(db.updates.length, 1);
});

test('relists one after another do not leave a resource unwatched for long', async (t) => {
  const { server, watcher } = await startCluster(t, ['web.yaml']);
  const web = follow(watcher, { namespace: 'shop', name: 'web', port: 80 });
  await web.untilKeys(['10.244.1.12:8080', '10.244.2.7:8080']);

  // Each round compacts the history just after the informer's relist was served, so its next watch
  // (after the reconnect delay) meets 410 Gone again. The client's own delay grows at every such
  // 410 (1, 2, 4, 8 s: the relist between does not reset it); the watcher's must stay at its base.
  for (let round = 0; round < 4; round++) {
    const lists = server.countRequests('list', 'EndpointSlice');
    server.compact();
    server.dropWatches();
    await web.until(`relist ${round + 1}`, () => server.countRequests('list', 'EndpointSlice') > lists);
  }
  const slice = structuredClone(server.get('EndpointSlice', 'shop', 'web-x7k2p')) as KubeObject & SliceSpec;
  slice.endpoints[2]!.conditions = { ready: true };
  server.apply(slice);
  // A change with no disturbance reaches the subscriber once the watch is back: well within 3 s
  // (retryDelayMs is 50 ms), where the client's delay alone would wait 8 s.
  await web.untilKeys(['10.244.1.12:8080', '10.244.2.7:8080', '10.244.2.9:8080'], 3000);
  await web.until('three watches again', () => server.watchCount() === 3, 3000);
  assert.deepEqual(web.violations, []);
  assert.equal(web.updates.filter((u) => u.kind === 'reset').length, 1);
});

// ---- Property: random EndpointSlice changes end in the model's set.

interface SliceOp {
  readonly slice: number;
  /** null deletes the slice. */
  readonly endpoints: { host: number; ready: boolean; pod: number }[] | null;
  readonly portName: 'http' | 'metrics';
  readonly port: number;
  readonly disturb: 'none' | 'drop' | 'drop-abrupt' | 'compact';
}

const PODS = [
  { name: 'p0', meshed: true, sa: 'alpha' },
  { name: 'p1', meshed: false, sa: 'beta' },
  { name: 'p2', meshed: true, sa: 'gamma' },
];

/** The expected endpoints of web:80 (port name http), computed from the server's slices. */
function model(server: FakeKubeServer): Map<string, Endpoint> {
  const expected = new Map<string, Endpoint>();
  for (const slice of server.list('EndpointSlice') as (KubeObject & SliceSpec)[]) {
    if (slice.metadata.labels?.['kubernetes.io/service-name'] !== 'web') continue;
    const port = slice.ports.find((p) => p.name === 'http')?.port;
    if (port === undefined) continue;
    for (const e of slice.endpoints) {
      if (e.conditions?.ready === false) continue;
      const pod = PODS.find((p) => p.name === (e.targetRef as { name: string }).name)!;
      for (const host of e.addresses) {
        const labels = { namespace: 'prop', service: 'web', workload: 'web', pod: pod.name };
        expected.set(`${host}:${port}`, {
          address: { host, port },
          weight: 1,
          labels,
          meshed: pod.meshed,
          identity: pod.meshed ? `spiffe://${TRUST_DOMAIN}/ns/prop/sa/${pod.sa}` : null,
          protocolHint: pod.meshed ? 'h2' : 'unknown',
        });
      }
    }
  }
  return expected;
}

const sliceOp = fc.record({
  slice: fc.integer({ min: 0, max: 2 }),
  endpoints: fc.option(
    fc.uniqueArray(
      fc.record({
        host: fc.integer({ min: 1, max: 5 }),
        ready: fc.boolean(),
        pod: fc.integer({ min: 0, max: 2 }),
      }),
      {
        selector: (e) => e.host,
        maxLength: 4,
      },
    ),
    { freq: 4 },
  ),
  portName: fc.constantFrom<'http' | 'metrics'>('http', 'http', 'http', 'metrics'),
  port: fc.constantFrom(8080, 8081),
  disturb: fc.constantFrom<SliceOp['disturb']>(
    'none',
    'none',
    'none',
    'none',
    'none',
    'none',
    'drop',
    'drop-abrupt',
    'compact',
  ),
});

test('property: any sequence of EndpointSlice changes ends with the model set, through drops and relists', async (t) => {
  const { server, watcher } = await startCluster(t);
  server.apply({
    kind: 'Service',
    metadata: { name: 'web', namespace: 'prop' },
    spec: { ports: [{ name: 'http', port: 80 }] },
  });
  for (const pod of PODS) {
    server.apply({
      kind: 'Pod',
      metadata: {
        name: pod.name,
        namespace: 'prop',
        labels: { app: 'web' },
        annotations: pod.meshed ? { 'trellis.dev/proxy-injected': 'true' } : {},
      },
      spec: { serviceAccountName: pod.sa, containers: [{ name: 'app' }] },
    });
  }
  const web = follow(watcher, { namespace: 'prop', name: 'web', port: 80 });
  await web.until('the first reset', () => web.state instanceof Map);

  await fc.assert(
    fc.asyncProperty(fc.array(sliceOp, { minLength: 1, maxLength: 12 }), async (ops) => {
      for (const op of ops) {
        const name = `web-s${op.slice}`;
        if (op.endpoints === null) server.delete('EndpointSlice', 'prop', name);
        else {
          server.apply(
            endpointSlice('prop', 'web', name, {
              ports: [{ name: op.portName, port: op.port }],
              endpoints: op.endpoints.map((e) => ({
                // Each slice owns its addresses (a range per slice), as the controller keeps them.
                addresses: [`10.1.${op.slice}.${e.host}`],
                conditions: { ready: e.ready },
                targetRef: { kind: 'Pod', name: PODS[e.pod]!.name, namespace: 'prop' },
              })),
            }),
          );
        }
        if (op.disturb === 'drop') server.dropWatches();
        if (op.disturb === 'drop-abrupt') server.dropWatches({ abrupt: true });
        if (op.disturb === 'compact') {
          server.compact();
          server.dropWatches();
        }
        if (op.slice === 0) await new Promise((resolve) => setImmediate(resolve));
      }
      const expected = model(server);
      const want = JSON.stringify([...expected.keys()].sort());
      // Wait for the whole model, not just its addresses: after a drop or relist, an endpoint
      // whose pod changed arrives as an `add` with new details a moment after the keys settle.
      const wantFull = new Map([...expected].sort());
      await web.until(
        `the model's endpoints ${want}`,
        () => web.state instanceof Map && isDeepStrictEqual(new Map([...web.state].sort()), wantFull),
        15_000,
      );
      assert.deepEqual(
        new Map([...(web.state as Map<string, Endpoint>)].sort()),
        new Map([...expected].sort()),
      );
      assert.deepEqual(web.violations, []);
    }),
    { numRuns: 50 },
  );
});

// ---- Address subscriptions.

const plain = (host: string, port: number): Endpoint => ({
  address: { host, port },
  weight: 1,
  labels: {},
  meshed: false,
  identity: null,
  protocolHint: 'unknown',
});

/** The one endpoint of an address follower, once `predicate` holds for it. */
async function onlyEndpoint(
  follower: Follower,
  what: string,
  predicate: (e: Endpoint) => boolean,
): Promise<Endpoint> {
  const only = (): Endpoint | undefined =>
    follower.state instanceof Map && follower.state.size === 1 ? [...follower.state.values()][0] : undefined;
  await follower.until(what, () => {
    const e = only();
    return e !== undefined && predicate(e);
  });
  return only()!;
}

test('addresses: a ClusterIP is its service port, a pod IP its pod on any port, others themselves', async (t) => {
  const { watcher } = await startCluster(t, ['web.yaml', 'db.yaml']);
  const byName = follow(watcher, { namespace: 'shop', name: 'web', port: 80 });
  const byIp = followAddress(watcher, { host: '10.96.41.17', port: 80 });
  const grpc = followAddress(watcher, { host: '10.96.41.17', port: 9090 });
  const postgres = followAddress(watcher, { host: '10.96.12.200', port: 5432 });
  await byName.untilKeys(['10.244.1.12:8080', '10.244.2.7:8080']);
  await byIp.untilKeys(['10.244.1.12:8080', '10.244.2.7:8080']);
  assert.deepEqual(byIp.updates, byName.updates, 'the same stream as the name');
  await grpc.untilKeys(['10.244.1.12:9090', '10.244.2.7:9090']);
  await postgres.untilKeys(['10.244.3.4:5432']);
  assert.equal(postgres.state?.get('10.244.3.4:5432')?.protocolHint, 'opaque');

  const pod = followAddress(watcher, { host: '10.244.1.12', port: 8080 });
  const webPod = (port: number): Endpoint => ({
    address: { host: '10.244.1.12', port },
    weight: 1,
    labels: { namespace: 'shop', pod: 'web-7d4b9c8f5-2xkqp', workload: 'web' },
    meshed: true,
    identity: 'spiffe://cluster.local/ns/shop/sa/web',
    protocolHint: 'h2',
  });
  await pod.untilKeys(['10.244.1.12:8080']);
  assert.deepEqual(pod.updates, [{ kind: 'reset', endpoints: [webPod(8080)] }]);
  // Pods need not declare the ports they listen on.
  const undeclared = followAddress(watcher, { host: '10.244.1.12', port: 15000 });
  await undeclared.untilKeys(['10.244.1.12:15000']);
  assert.deepEqual(undeclared.updates, [{ kind: 'reset', endpoints: [webPod(15000)] }]);
  // An unmeshed pod: described, without identity.
  const db = followAddress(watcher, { host: '10.244.3.4', port: 5432 });
  assert.deepEqual(await onlyEndpoint(db, 'the db pod', (e) => e.labels.pod === 'db-0'), {
    address: { host: '10.244.3.4', port: 5432 },
    weight: 1,
    labels: { namespace: 'shop', pod: 'db-0', workload: 'db' },
    meshed: false,
    identity: null,
    protocolHint: 'unknown', // the Service's opaque-ports annotation is the Service's, not the pod's
  });

  for (const [host, port, why] of [
    ['10.244.2.9', 8080, 'a pending pod'],
    ['10.96.41.17', 81, 'a port the service does not have'],
    ['10.99.0.1', 80, 'nobody'],
  ] as const) {
    const other = followAddress(watcher, { host, port });
    await other.untilKeys([`${host}:${port}`]);
    assert.deepEqual(other.updates, [{ kind: 'reset', endpoints: [plain(host, port)] }], why);
  }
  for (const f of [byIp, grpc, postgres, pod, undeclared, db]) assert.deepEqual(f.violations, []);
});

test('addresses follow their pods: ready, meshed, opaque ports, host network, finished, IPv6', async (t) => {
  const { server, watcher } = await startCluster(t, ['web.yaml']);
  const podYaml = fixture('web.yaml').split('---').at(-1)!;
  const pending = followAddress(watcher, { host: '10.244.2.9', port: 8080 });
  await pending.untilKeys(['10.244.2.9:8080']);
  assert.deepEqual(pending.state?.get('10.244.2.9:8080'), plain('10.244.2.9', 8080));

  // The pending pod starts and becomes ready: meshed (by annotation), then unready again.
  const [started] = server.applyYaml(podYaml) as (KubeObject & { status: Record<string, unknown> })[];
  const running = structuredClone(started!);
  running.status = { phase: 'Running', podIP: '10.244.2.9', conditions: [{ type: 'Ready', status: 'True' }] };
  server.apply(running);
  await onlyEndpoint(pending, 'the meshed pod', (e) => e.meshed);
  assert.equal(pending.state?.get('10.244.2.9:8080')?.identity, 'spiffe://cluster.local/ns/shop/sa/web');
  const unready = structuredClone(running);
  unready.status = { ...running.status, conditions: [{ type: 'Ready', status: 'False' }] };
  server.apply(unready);
  await onlyEndpoint(pending, 'the plain address', (e) => !e.meshed && e.labels.pod === undefined);
  server.apply(running);
  await onlyEndpoint(pending, 'meshed again', (e) => e.meshed);
  server.delete('Pod', 'shop', 'web-7d4b9c8f5-qq4rt');
  await onlyEndpoint(pending, 'the plain address once deleted', (e) => e.labels.pod === undefined);

  // Opaque ports by the pod's annotation: a number, a range, a container port's name.
  const pod = (name: string, ip: string, extra: Partial<V1Pod> = {}): KubeObject => ({
    kind: 'Pod',
    metadata: {
      name,
      namespace: 'raw',
      annotations: { 'config.trellis.dev/opaque-ports': '7000-7001,redis' },
      ...(extra.metadata as object),
    },
    spec: {
      containers: [{ name: 'app', ports: [{ name: 'redis', containerPort: 6379 }] }],
      ...extra.spec,
    },
    status: { phase: 'Running', podIP: ip, ...extra.status },
  });
  server.apply(pod('cache', '10.244.9.1'));
  const hints = await Promise.all(
    [6379, 7001, 8080].map(async (port) => {
      const f = followAddress(watcher, { host: '10.244.9.1', port });
      return (await onlyEndpoint(f, `the cache pod on ${port}`, (e) => e.labels.pod === 'cache'))
        .protocolHint;
    }),
  );
  assert.deepEqual(hints, ['opaque', 'opaque', 'unknown']);

  // A host-network pod has the node's IP: not the pod's to claim.
  server.apply(pod('node-agent', '192.168.7.1', { spec: { hostNetwork: true, containers: [] } }));
  // A finished pod's IP belongs to whichever pod has it now.
  server.apply(pod('old-job', '10.244.9.2', { status: { phase: 'Succeeded', podIP: '10.244.9.2' } }));
  const job = followAddress(watcher, { host: '10.244.9.2', port: 80 });
  await job.untilKeys(['10.244.9.2:80']);
  assert.deepEqual(job.state?.get('10.244.9.2:80'), plain('10.244.9.2', 80));
  server.apply(pod('new-pod', '10.244.9.2'));
  await onlyEndpoint(job, 'the pod that has the IP now', (e) => e.labels.pod === 'new-pod');
  const host = followAddress(watcher, { host: '192.168.7.1', port: 80 });
  await host.untilKeys(['192.168.7.1:80']);
  assert.deepEqual(host.state?.get('192.168.7.1:80'), plain('192.168.7.1', 80));

  // IPv6: any spelling of the pod's address finds it; the endpoint keeps the spelling asked for.
  server.apply(
    pod('v6', 'fd00:10:244::5', { status: { phase: 'Running', podIPs: [{ ip: 'fd00:10:244::5' }] } }),
  );
  const v6 = followAddress(watcher, { host: 'FD00:10:244:0:0:0:0:5', port: 80 });
  const found = await onlyEndpoint(v6, 'the IPv6 pod', (e) => e.labels.pod === 'v6');
  assert.deepEqual(found.address, { host: 'FD00:10:244:0:0:0:0:5', port: 80 });
  for (const f of [pending, job, host, v6]) assert.deepEqual(f.violations, []);
});

test('addresses: a ClusterIP whose service is created, changed and deleted after subscribe', async (t) => {
  const { server, watcher } = await startCluster(t, ['web.yaml']);
  const ip = followAddress(watcher, { host: '10.96.50.5', port: 80 });
  await ip.untilKeys(['10.96.50.5:80']);
  // The web Service takes that ClusterIP (its slices stay), moves to another, comes back, goes.
  const service = (clusterIP: string): KubeObject => ({
    kind: 'Service',
    metadata: { name: 'web', namespace: 'shop' },
    spec: { clusterIP, clusterIPs: [clusterIP], ports: [{ name: 'http', port: 80, targetPort: 'http' }] },
  });
  server.apply(service('10.96.50.5'));
  await ip.untilKeys(['10.244.1.12:8080', '10.244.2.7:8080']);
  // Never empty on the way: the service's endpoints were added before the plain address left.
  assert.ok(
    ip.history.every((keys) => keys.length > 0),
    JSON.stringify(ip.history),
  );
  server.apply(service('10.96.50.6'));
  await ip.untilKeys(['10.96.50.5:80']);
  server.compact();
  server.dropWatches();
  server.apply(service('10.96.50.5'));
  await ip.untilKeys(['10.244.1.12:8080', '10.244.2.7:8080']);
  server.delete('Service', 'shop', 'web');
  await ip.untilKeys(['10.96.50.5:80']);
  assert.deepEqual(ip.violations, []);
  assert.equal(ip.updates.filter((u) => u.kind === 'reset').length, 1);
});

// ---- Property: the address index against a model.

const podArb = fc.record({
  ip: fc.constantFrom('10.0.0.1', '10.0.0.2', 'fd00::1', 'FD00:0::1'),
  phase: fc.constantFrom('Pending', 'Running', 'Running', 'Succeeded', 'Failed'),
  ready: fc.constantFrom<'True' | 'False' | undefined>('True', 'False', undefined),
  hostNetwork: fc.boolean(),
});

test('property: the address index holds, per IP, a live non-host-network pod, a ready one if any', () => {
  fc.assert(
    fc.property(fc.array(podArb, { maxLength: 8 }), (specs) => {
      const pods: V1Pod[] = specs.map((p, i) => ({
        metadata: { name: `p${i}`, namespace: 'prop' },
        spec: { hostNetwork: p.hostNetwork, containers: [] },
        status: {
          phase: p.phase,
          podIP: p.ip,
          ...(p.ready === undefined ? {} : { conditions: [{ type: 'Ready', status: p.ready }] }),
        },
      }));
      const index = buildAddressIndex([], pods);
      const canonical = (ip: string): string => (ip.includes(':') ? 'fd00::1' : ip);
      for (const ip of ['10.0.0.1', '10.0.0.2', 'fd00::1']) {
        const candidates = pods.filter(
          (p, i) =>
            canonical(specs[i]!.ip) === ip &&
            !specs[i]!.hostNetwork &&
            specs[i]!.phase !== 'Succeeded' &&
            specs[i]!.phase !== 'Failed',
        );
        const got = index.pods.get(ip);
        if (candidates.length === 0) assert.equal(got, undefined, ip);
        else {
          assert.ok(got !== undefined && candidates.includes(got), ip);
          assert.equal(isPodReady(got), candidates.some(isPodReady), `${ip}: a ready pod wins`);
        }
      }
      assert.equal(index.pods.has('FD00:0::1'), false, 'keys are canonical');
    }),
    { numRuns: 300 },
  );
});
