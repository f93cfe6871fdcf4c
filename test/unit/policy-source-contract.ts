// The shared contract of policy sources (src/control/policy/source.ts): the state folder and the
// Kubernetes API must both pass it. `runPolicySourceContract(name, makeFixture)` registers
// node:test tests; the fixture gives a fresh, empty source per test and the means to create and
// delete resources and workloads in it. Waits are event-driven (onChange) with a deadline, so
// sources that apply changes eventually (informers) pass as well as immediate ones.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { buildInboundPolicy, type PolicyResource } from '../../src/control/policy/model.ts';
import type { PolicySource } from '../../src/control/policy/source.ts';

export interface PolicySourceFixture {
  readonly source: PolicySource;
  /** Creates or replaces a resource. */
  setResource(resource: PolicyResource): Promise<void>;
  deleteResource(kind: PolicyResource['kind'], namespace: string, name: string): Promise<void>;
  /** Creates or replaces a workload with these labels and named app ports. */
  setWorkload(
    namespace: string,
    name: string,
    labels: Record<string, string>,
    ports: Record<string, number>,
  ): Promise<void>;
  /** Puts an invalid Server named `name` in the source (a bad file, an invalid CRD object). */
  setInvalidServer(namespace: string, name: string): Promise<void>;
  close(): Promise<void>;
}

const server = (
  name: string,
  spec: Partial<Extract<PolicyResource, { kind: 'Server' }>['spec']>,
): PolicyResource => ({
  kind: 'Server',
  namespace: 'shop',
  name,
  spec: { port: 8080, protocol: 'http1', ...spec },
});

const authz = (name: string, serverName: string): PolicyResource => ({
  kind: 'AuthorizationPolicy',
  namespace: 'shop',
  name,
  spec: {
    server: serverName,
    from: { identities: [], namespaces: ['shop'], networks: ['198.18.0.0/15'], unauthenticated: false },
    routes: [{ path: '/api/*', methods: ['GET'] }],
  },
});

/** The policy of a workload as a short text: "server:port:protocol[authz,...]" per server. */
function describe(source: PolicySource, workload: string, labels: Record<string, string> = {}): string {
  const { policy, skipped } = buildInboundPolicy(
    source.snapshot(),
    source.workload('shop', workload, labels),
  );
  const servers = (policy.servers ?? []).map(
    (s) => `${s.name}:${s.port}:${s.protocol}[${(s.authorizations ?? []).map((a) => a.name).join(',')}]`,
  );
  return [...servers, ...skipped.map((s) => `skipped ${s.server}`)].join(' ');
}

/** Resolves once `predicate` holds, checking after every change (and once now). */
async function until(
  source: PolicySource,
  what: string,
  predicate: () => boolean,
  timeoutMs: number,
): Promise<void> {
  if (predicate()) return;
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      off();
      reject(new Error(`timed out waiting for ${what}`));
    }, timeoutMs);
    const off = source.onChange(() => {
      if (!predicate()) return;
      clearTimeout(timer);
      off();
      resolve();
    });
  });
}

export function runPolicySourceContract(
  name: string,
  makeFixture: () => Promise<PolicySourceFixture>,
  timeoutMs = 5000,
): void {
  const withFixture = (title: string, body: (f: PolicySourceFixture) => Promise<void>) =>
    test(`${name} policy source: ${title}`, async () => {
      const fixture = await makeFixture();
      try {
        await fixture.source.ready();
        await body(fixture);
      } finally {
        await fixture.close();
      }
    });

  withFixture('starts empty', async ({ source }) => {
    assert.deepEqual(source.snapshot(), { servers: [], authorizations: [] });
    assert.equal(describe(source, 'web'), '');
  });

  withFixture('a Server and its AuthorizationPolicy show up, change, and go', async (f) => {
    const { source } = f;
    await f.setResource(server('web-http', { workload: 'web' }));
    await f.setResource(authz('web-api', 'web-http'));
    await until(
      source,
      'the server with its authorization',
      () => describe(source, 'web') === 'shop/web-http:8080:http1[shop/web-api]',
      timeoutMs,
    );
    assert.equal(describe(source, 'other'), '', 'workload: web selects only web');
    const [resource] = source.snapshot().authorizations;
    assert.deepEqual(resource?.spec, authz('x', 'web-http').spec);

    await f.setResource(server('web-http', { workload: 'web', port: 9090, protocol: 'grpc' }));
    await until(
      source,
      'the changed server',
      () => describe(source, 'web') === 'shop/web-http:9090:grpc[shop/web-api]',
      timeoutMs,
    );

    await f.deleteResource('AuthorizationPolicy', 'shop', 'web-api');
    await until(
      source,
      'the authorization gone',
      () => describe(source, 'web') === 'shop/web-http:9090:grpc[]',
      timeoutMs,
    );
    await f.deleteResource('Server', 'shop', 'web-http');
    await until(source, 'the server gone', () => describe(source, 'web') === '', timeoutMs);
  });

  withFixture('podSelector matches the workload labels the source knows', async (f) => {
    const { source } = f;
    await f.setWorkload('shop', 'web', { app: 'web', tier: 'front' }, { http: 8080 });
    await f.setResource(server('by-label', { podSelector: { matchLabels: { app: 'web' } } }));
    await f.setResource(server('other-label', { podSelector: { matchLabels: { app: 'db' } } }));
    await until(
      source,
      'the labelled server',
      () => describe(source, 'web') === 'shop/by-label:8080:http1[]',
      timeoutMs,
    );
    await f.setWorkload('shop', 'web', { app: 'db' }, { http: 8080 });
    await until(
      source,
      'the relabelled workload',
      () => describe(source, 'web') === 'shop/other-label:8080:http1[]',
      timeoutMs,
    );
  });

  withFixture('named ports resolve through the workload; unresolvable ones are skipped', async (f) => {
    const { source } = f;
    await f.setResource(server('named', { workload: 'web', port: 'admin' }));
    await until(
      source,
      'the unresolved server',
      () => describe(source, 'web') === 'skipped shop/named',
      timeoutMs,
    );
    await f.setWorkload('shop', 'web', { app: 'web' }, { admin: 9990 });
    await until(
      source,
      'the resolved port',
      () => describe(source, 'web') === 'shop/named:9990:http1[]',
      timeoutMs,
    );
  });

  withFixture('an invalid resource is skipped; the others still apply', async (f) => {
    const { source } = f;
    await f.setInvalidServer('shop', 'broken');
    await f.setResource(server('good', { workload: 'web' }));
    await until(
      source,
      'the good server',
      () => describe(source, 'web') === 'shop/good:8080:http1[]',
      timeoutMs,
    );
    assert.deepEqual(
      source.snapshot().servers.map((s) => s.name),
      ['good'],
    );
  });
}
