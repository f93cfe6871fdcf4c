// The two policy sources (src/control/policy/local.ts over a state folder, kubernetes.ts over the
// fake API server with the real @kubernetes/client-node informers) through the shared contract
// (policy-source-contract.ts), plus each one's own cases: kubectl-shaped CRD fixtures on
// Kubernetes (named container ports, podSelector on pod labels, an invalid object skipped), and
// on one machine a file in the wrong place, and the rescan alone carrying changes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { createLogger, silentLogger } from '../../src/core/log.ts';
import { writeServiceFile, writeWorkloadFile } from '../../src/control/discovery/local-state.ts';
import { kubeConfigForServer } from '../../src/control/discovery/kubernetes.ts';
import { KubernetesPolicySource } from '../../src/control/policy/kubernetes.ts';
import { LocalPolicySource } from '../../src/control/policy/local.ts';
import { buildInboundPolicy } from '../../src/control/policy/model.ts';
import {
  deletePolicyFile,
  policyDocument,
  policyPath,
  writePolicyFile,
} from '../../src/control/policy/state-files.ts';
import { FakeKubeServer, type KubeObject } from '../fake-kube/server.ts';
import { runPolicySourceContract } from './policy-source-contract.ts';

async function localFixture(rescanIntervalMs = 500, debounceMs = 20) {
  const root = await mkdtemp(join(tmpdir(), 'trellis-policy-'));
  const source = new LocalPolicySource({ root, log: silentLogger, debounceMs, rescanIntervalMs });
  return { root, source };
}

runPolicySourceContract('local', async () => {
  const { root, source } = await localFixture();
  return {
    source,
    setResource: async (resource) => void (await writePolicyFile(root, resource)),
    deleteResource: async (kind, namespace, name) =>
      void (await deletePolicyFile(root, { kind, namespace, name })),
    async setWorkload(namespace, name, labels, ports) {
      await writeServiceFile(root, namespace, name, {
        ports: Object.entries(ports).map(([portName, port]) => ({
          port,
          name: portName,
          targetPort: portName,
        })),
      });
      await writeWorkloadFile(root, namespace, `${name}-1`, {
        service: name,
        address: '127.0.0.1',
        port: 40001,
        labels,
      });
    },
    async setInvalidServer(namespace, name) {
      const path = policyPath(root, { kind: 'Server', namespace, name });
      await mkdir(join(path, '..'), { recursive: true });
      await writeFile(
        path,
        'apiVersion: policy.trellis.dev/v1alpha1\nkind: Server\nmetadata: {name: broken}\nspec: {port: 0}\n',
      );
    },
    async close() {
      await source.close();
      await rm(root, { recursive: true, force: true });
    },
  };
});

// The same contract with fs.watch events never arriving in time: the periodic rescan alone must carry it.
runPolicySourceContract('local (rescan only)', async () => {
  const { root, source } = await localFixture(100, 60_000);
  return {
    source,
    setResource: async (resource) => void (await writePolicyFile(root, resource)),
    deleteResource: async (kind, namespace, name) =>
      void (await deletePolicyFile(root, { kind, namespace, name })),
    async setWorkload(namespace, name, labels, ports) {
      await writeServiceFile(root, namespace, name, {
        ports: Object.entries(ports).map(([portName, port]) => ({
          port,
          name: portName,
          targetPort: portName,
        })),
      });
      await writeWorkloadFile(root, namespace, `${name}-1`, {
        service: name,
        address: '127.0.0.1',
        port: 40001,
        labels,
      });
    },
    async setInvalidServer(namespace, name) {
      const path = policyPath(root, { kind: 'Server', namespace, name });
      await mkdir(join(path, '..'), { recursive: true });
      await writeFile(path, 'not: [valid');
    },
    async close() {
      await source.close();
      await rm(root, { recursive: true, force: true });
    },
  };
});

async function kubeFixture() {
  const server = new FakeKubeServer({ bookmarkIntervalMs: 50 });
  await server.start();
  const source = new KubernetesPolicySource({
    kubeConfig: kubeConfigForServer(server.url),
    log: silentLogger,
    retryDelayMs: 50,
  });
  return { server, source };
}

runPolicySourceContract('kubernetes', async () => {
  const { server, source } = await kubeFixture();
  return {
    source,
    setResource: async (resource) => void server.apply(policyDocument(resource) as unknown as KubeObject),
    deleteResource: async (kind, namespace, name) => void server.delete(kind, namespace, name),
    async setWorkload(namespace, name, labels, ports) {
      server.apply({
        kind: 'Pod',
        metadata: { name, namespace, labels },
        spec: {
          containers: [
            {
              name: 'app',
              ports: Object.entries(ports).map(([portName, port]) => ({
                name: portName,
                containerPort: port,
              })),
            },
            // The proxy's own ports never resolve a Server's port name.
            { name: 'trellis-proxy', ports: [{ name: 'admin', containerPort: 4191 }] },
          ],
        },
      });
    },
    async setInvalidServer(namespace, name) {
      server.apply({
        apiVersion: 'policy.trellis.dev/v1alpha1',
        kind: 'Server',
        metadata: { name, namespace },
        spec: { workload: 'web', podSelector: {}, port: 8080 },
      });
    },
    async close() {
      await source.close();
      await server.close();
    },
  };
});

const fixture = (name: string): string =>
  readFileSync(new URL(`../fake-kube/fixtures/${name}`, import.meta.url), 'utf8');

test('kubernetes: kubectl-shaped CRDs and pods become the policy of a pod; the invalid object is skipped and logged', async () => {
  const server = new FakeKubeServer();
  await server.start();
  server.applyYaml(fixture('web.yaml'));
  server.applyYaml(fixture('policy.yaml'));
  const lines: string[] = [];
  const source = new KubernetesPolicySource({
    kubeConfig: kubeConfigForServer(server.url),
    log: createLogger({ level: 'warn', write: (line) => lines.push(line) }),
    retryDelayMs: 50,
  });
  try {
    await source.ready();
    const pod = 'web-7d4b9c8f5-2xkqp';
    const { policy, skipped } = buildInboundPolicy(source.snapshot(), source.workload('shop', pod, {}));
    assert.deepEqual(skipped, []);
    assert.deepEqual(policy.servers, [
      {
        name: 'shop/web-grpc',
        port: 9090,
        protocol: 'grpc',
        authorizations: [
          {
            name: 'shop/web-grpc-shop',
            identities: ['spiffe://cluster.local/ns/ops/sa/*'],
            namespaces: ['shop'],
            networks: [],
            unauthenticated: false,
            routes: [],
          },
        ],
      },
      {
        name: 'shop/web-http',
        port: 8080,
        protocol: 'http1',
        authorizations: [
          {
            name: 'shop/web-http-public',
            identities: [],
            namespaces: [],
            networks: [],
            unauthenticated: true,
            routes: [{ path: '/public/*', methods: ['GET'] }],
          },
        ],
      },
    ]);
    // Another web pod: selected by label only (web-grpc names the first pod).
    const other = buildInboundPolicy(source.snapshot(), source.workload('shop', 'web-7d4b9c8f5-9hzlm', {}));
    assert.deepEqual(
      other.policy.servers?.map((s) => s.name),
      ['shop/web-http'],
    );
    // A pod the source does not know: the proxy's labels select, but no port name resolves.
    const unknown = buildInboundPolicy(source.snapshot(), source.workload('shop', 'new-pod', { app: 'web' }));
    assert.deepEqual(
      unknown.skipped.map((s) => s.server),
      ['shop/web-http'],
    );
    const warning = lines
      .map((l) => JSON.parse(l) as { msg: string; problem?: string })
      .find((l) => l.msg === 'invalid policy resource skipped');
    assert.match(
      warning?.problem ?? '',
      /AuthorizationPolicy shop\/broken: spec\.from\.networks\.0: expected a CIDR/,
    );
  } finally {
    await source.close();
    await server.close();
  }
});

test('kubernetes: pod status updates are not reported as policy changes', async () => {
  const { server, source } = await kubeFixture();
  try {
    server.apply({
      kind: 'Pod',
      metadata: { name: 'p', namespace: 'shop', labels: { app: 'web' } },
      spec: { containers: [] },
    });
    await source.ready();
    await new Promise((r) => setTimeout(r, 100));
    let changes = 0;
    source.onChange(() => changes++);
    server.apply({
      kind: 'Pod',
      metadata: { name: 'p', namespace: 'shop', labels: { app: 'web' } },
      spec: { containers: [] },
      status: { phase: 'Running' },
    });
    server.apply({
      kind: 'Pod',
      metadata: { name: 'p', namespace: 'shop', labels: { app: 'api' } },
      spec: { containers: [] },
    });
    const deadline = Date.now() + 5000;
    while (changes === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(changes, 1);
    assert.deepEqual(source.workload('shop', 'p', {}).labels, { app: 'api' });
  } finally {
    await source.close();
    await server.close();
  }
});

test('local: a file whose name does not match its content is skipped and logged', async () => {
  const root = await mkdtemp(join(tmpdir(), 'trellis-policy-'));
  const lines: string[] = [];
  const source = new LocalPolicySource({
    root,
    log: createLogger({ level: 'warn', write: (line) => lines.push(line) }),
    rescanIntervalMs: 100,
  });
  try {
    await source.ready();
    await mkdir(join(root, 'policy', 'shop'), { recursive: true });
    await writeFile(
      join(root, 'policy', 'shop', 'server-a.yaml'),
      'apiVersion: policy.trellis.dev/v1alpha1\nkind: Server\nmetadata: {name: b, namespace: shop}\nspec: {workload: web, port: 80}\n',
    );
    const deadline = Date.now() + 5000;
    while (!lines.some((l) => l.includes('invalid policy file skipped')) && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 20));
    }
    assert.match(lines.join('\n'), /holds Server shop\/b, which belongs in another file/);
    assert.deepEqual(source.snapshot().servers, []);
  } finally {
    await source.close();
    await rm(root, { recursive: true, force: true });
  }
});

test('local: a named port of a `trellis run` workload is its app port, whatever the Service says', async () => {
  const { root, source } = await localFixture(100);
  try {
    await source.ready();
    // The Service maps grpc -> 8080 (what clients dial); the app listens on 41234 behind its proxy.
    await writeServiceFile(root, 'shop', 'voting', {
      ports: [{ port: 8080, name: 'grpc', targetPort: 'grpc' }],
    });
    await writeWorkloadFile(root, 'shop', 'voting-1', {
      service: 'voting',
      address: '127.0.0.1',
      ports: [{ name: 'grpc', port: 40001 }],
      appPort: 41234,
    });
    await source.rescan();
    assert.equal(source.workload('shop', 'voting', {}).namedPorts.get('grpc'), 41234);
    // Without appPort (a registration written by hand), the Service decides.
    await writeWorkloadFile(root, 'shop', 'voting-1', {
      service: 'voting',
      address: '127.0.0.1',
      ports: [{ name: 'grpc', port: 40001 }],
    });
    await source.rescan();
    assert.equal(source.workload('shop', 'voting', {}).namedPorts.get('grpc'), 8080);
  } finally {
    await source.close();
    await rm(root, { recursive: true, force: true });
  }
});
