// Tests for the proxy's authorizer (src/proxy/policy/authorizer.ts, decide.ts): the four default
// policies, Server authorizations (identities, namespaces, networks, unauthenticated, routes),
// route-scoped authorizations at connection time (HTTP admitted, opaque TCP not), audit not
// softening a Server's denial; and the Policy.WatchInbound client against a real gRPC server on
// loopback: the first policy, a change (onChange), the last policy kept while the server is
// down, and a re-watch once it is back.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import fc from 'fast-check';
import { loadPolicyApi, type ApiInboundPolicy, type ApiInboundRequestOutput } from '../../src/api/load.ts';
import { silentLogger } from '../../src/core/log.ts';
import { createAuthorizer } from '../../src/proxy/policy/authorizer.ts';
import { compilePolicy, decideConnection, decideRequest } from '../../src/proxy/policy/decide.ts';
import { DEFAULT_POLICIES, type DefaultPolicy, type InboundPeer } from '../../src/proxy/policy/types.ts';

const ALICE: InboundPeer = { identity: 'spiffe://trellis.local/ns/shop/sa/alice', ip: '10.0.0.5' };
const BOB: InboundPeer = { identity: 'spiffe://trellis.local/ns/ops/sa/bob', ip: '10.0.0.6' };
const ANON: InboundPeer = { identity: null, ip: '192.0.2.9' };
const LOCAL_ANON: InboundPeer = { identity: null, ip: '::ffff:198.18.0.4' };

function authorization(name: string, fields: Partial<Omit<ApiAuthz, 'name'>>): ApiAuthz {
  return {
    name,
    identities: [],
    namespaces: [],
    networks: [],
    unauthenticated: false,
    routes: [],
    ...fields,
  };
}
type ApiAuthz = {
  name: string;
  identities: string[];
  namespaces: string[];
  networks: string[];
  unauthenticated: boolean;
  routes: { path: string; methods: string[] }[];
};

const POLICY = {
  servers: [
    {
      name: 'shop/web-http',
      port: 8080,
      protocol: 'http1',
      rateLimit: null,
      authorizations: [
        authorization('shop/admins', { identities: ['spiffe://trellis.local/ns/ops/sa/*'] }),
        authorization('shop/public-read', {
          unauthenticated: true,
          routes: [{ path: '/public/*', methods: ['GET'] }],
        }),
        authorization('shop/health', {
          networks: ['198.18.0.0/15'],
          routes: [{ path: '/health', methods: [] }],
        }),
      ],
    },
    {
      name: 'shop/web-db',
      port: 5432,
      protocol: 'detect',
      rateLimit: null,
      authorizations: [
        authorization('shop/same-ns', { namespaces: ['shop'] }),
        authorization('shop/db-routes', { unauthenticated: true, routes: [{ path: '/*', methods: [] }] }),
      ],
    },
    { name: 'shop/locked', port: 9000, protocol: 'opaque', rateLimit: null, authorizations: [] },
  ],
};
const compiled = compilePolicy(POLICY);

test('default policies on a port no Server selects', () => {
  const expect: Record<DefaultPolicy, [boolean, boolean, boolean]> = {
    // [authenticated allowed, unauthenticated allowed, unauthenticated audited]
    'all-unauthenticated': [true, true, false],
    'all-authenticated': [true, false, false],
    deny: [false, false, false],
    audit: [true, true, true],
  };
  for (const policy of DEFAULT_POLICIES) {
    const [authOk, anonOk, anonAudited] = expect[policy];
    const name = `default:${policy}`;
    assert.deepEqual(decideConnection(compiled, policy, 1234, ALICE, 'opaque'), {
      allowed: authOk,
      server: name,
      policy: name,
      audited: false,
    });
    assert.deepEqual(decideRequest(compiled, policy, 1234, ANON, { method: 'GET', path: '/' }), {
      allowed: anonOk,
      server: name,
      policy: name,
      audited: anonAudited,
    });
  }
});

test('a Server admits by identity pattern, namespace, network and unauthenticated', () => {
  const d = (port: number, peer: InboundPeer, path = '/', method = 'GET') =>
    decideRequest(compiled, 'all-unauthenticated', port, peer, { method, path });
  assert.deepEqual(d(8080, BOB, '/admin', 'DELETE'), {
    allowed: true,
    server: 'shop/web-http',
    policy: 'shop/admins',
    audited: false,
  });
  assert.deepEqual(d(8080, ALICE, '/admin'), {
    allowed: false,
    server: 'shop/web-http',
    policy: 'shop/web-http:no-authorization',
    audited: false,
  });
  assert.equal(d(8080, ALICE, '/public/cats').policy, 'shop/public-read');
  assert.equal(d(8080, ANON, '/public/cats', 'POST').allowed, false);
  assert.equal(d(8080, LOCAL_ANON, '/health').policy, 'shop/health');
  assert.equal(d(8080, ANON, '/health').allowed, false);
  assert.equal(d(5432, ALICE).policy, 'shop/same-ns');
  assert.equal(d(5432, BOB).policy, 'shop/db-routes');
  assert.equal(d(9000, ALICE).policy, 'shop/locked:no-authorization');
});

test('route-scoped authorizations admit HTTP connections but never opaque TCP', () => {
  // web-http: only route-scoped authorizations match an anonymous peer.
  assert.equal(decideConnection(compiled, 'deny', 8080, ANON, 'http').policy, 'shop/public-read');
  assert.deepEqual(decideConnection(compiled, 'deny', 8080, ANON, 'opaque'), {
    allowed: false,
    server: 'shop/web-http',
    policy: 'shop/web-http:no-authorization',
    audited: false,
  });
  // web-db (detect): the whole-server authorization admits opaque TCP from its namespace.
  assert.equal(decideConnection(compiled, 'deny', 5432, ALICE, 'opaque').allowed, true);
  assert.equal(decideConnection(compiled, 'deny', 5432, BOB, 'opaque').allowed, false);
  assert.equal(decideConnection(compiled, 'deny', 5432, BOB, 'http').policy, 'shop/db-routes');
});

test('without an address only the default policy applies; close is idempotent', () => {
  const authz = createAuthorizer({
    defaultPolicy: 'all-authenticated',
    namespace: 'shop',
    workload: 'web',
    log: silentLogger,
  });
  assert.equal(authz.protocolOf(8080), null);
  assert.equal(authz.checkConnection(8080, ALICE).allowed, true);
  assert.deepEqual(authz.checkRequest(8080, ANON, { method: 'GET', path: '/' }), {
    allowed: false,
    server: 'default:all-authenticated',
    policy: 'default:all-authenticated',
    audited: false,
  });
  const off = authz.onChange(() => {});
  off();
  authz.close();
  authz.close();
});

test('property: audit only softens the default; a Server decides the same whatever the default', () => {
  const peer = fc.record({
    identity: fc.option(fc.constantFrom(ALICE.identity, BOB.identity, 'spiffe://x/ns/y/sa/z'), { nil: null }),
    ip: fc.constantFrom('10.0.0.1', '198.18.3.3', '::1', '::ffff:198.19.0.1'),
  });
  const port = fc.constantFrom(8080, 5432, 9000, 1, 65535);
  const request = fc.record({
    method: fc.constantFrom('GET', 'POST'),
    path: fc.constantFrom('/', '/health', '/public/x'),
  });
  fc.assert(
    fc.property(peer, port, request, fc.constantFrom(...DEFAULT_POLICIES), (p, n, r, policy) => {
      const decision = decideRequest(compiled, policy, n, p, r);
      const selected = compiled.servers.has(n);
      if (selected) {
        assert.deepEqual(decision, decideRequest(compiled, 'all-unauthenticated', n, p, r));
        assert.equal(decision.audited, false);
      } else if (policy === 'audit') {
        assert.equal(decision.allowed, true);
        assert.equal(decision.audited, !decideRequest(compiled, 'all-authenticated', n, p, r).allowed);
      }
      // A request admitted on an HTTP connection was admitted at connection time too.
      if (decision.allowed) assert.equal(decideConnection(compiled, policy, n, p, 'http').allowed, true);
    }),
  );
});

test('compilePolicy skips what it cannot use, and says so', () => {
  const warnings: string[] = [];
  const policy = compilePolicy(
    {
      servers: [
        { name: 'a/bad-port', port: 0, protocol: 'http1', rateLimit: null, authorizations: [] },
        {
          name: 'a/first',
          port: 80,
          protocol: 'nonsense',
          rateLimit: null,
          authorizations: [authorization('a/x', { networks: ['nope'] })],
        },
        { name: 'a/second', port: 80, protocol: 'http1', rateLimit: null, authorizations: [] },
      ],
    },
    (msg) => warnings.push(msg),
  );
  assert.deepEqual([...policy.servers.keys()], [80]);
  assert.equal(policy.servers.get(80)?.name, 'a/first');
  assert.equal(policy.servers.get(80)?.protocol, 'detect');
  assert.equal(warnings.length, 4, warnings.join('; '));
});

/** A Policy server on loopback whose policy the test sets; every open stream gets each change. */
async function startFakePolicyServer(port = 0) {
  const { Policy } = loadPolicyApi();
  const server = new grpc.Server();
  const streams = new Set<grpc.ServerWritableStream<ApiInboundRequestOutput, ApiInboundPolicy>>();
  const requests: ApiInboundRequestOutput[] = [];
  let current: ApiInboundPolicy = { servers: [] };
  server.addService(Policy.service, {
    WatchInbound(call: grpc.ServerWritableStream<ApiInboundRequestOutput, ApiInboundPolicy>) {
      requests.push(call.request);
      streams.add(call);
      call.on('cancelled', () => streams.delete(call));
      call.write(current);
    },
  });
  const bound = await new Promise<number>((resolve, reject) =>
    server.bindAsync(`127.0.0.1:${port}`, grpc.ServerCredentials.createInsecure(), (err, p) =>
      err ? reject(err) : resolve(p),
    ),
  );
  return {
    port: bound,
    requests,
    set(policy: ApiInboundPolicy) {
      current = policy;
      for (const s of streams) s.write(policy);
    },
    stop() {
      for (const s of streams) s.end();
      streams.clear();
      server.forceShutdown();
    },
  };
}

function nextChange(authz: { onChange(l: () => void): () => void }, timeoutMs = 5000): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('no policy change within the time limit')), timeoutMs);
    const off = authz.onChange(() => {
      clearTimeout(timer);
      off();
      resolve();
    });
  });
}

test('WatchInbound: first policy, changes, last policy kept while the control plane is down, re-watch', async () => {
  let fake = await startFakePolicyServer();
  const port = fake.port;
  fake.set(POLICY);
  const authz = createAuthorizer({
    defaultPolicy: 'all-unauthenticated',
    address: `127.0.0.1:${port}`,
    namespace: 'shop',
    workload: 'web',
    labels: { app: 'web' },
    log: silentLogger,
    backoff: { initialMs: 20, maxMs: 100 },
  });
  try {
    // Before the first policy: the default applies everywhere.
    assert.equal(authz.checkConnection(9000, ALICE).allowed, true);
    const first = nextChange(authz);
    await authz.firstPolicy;
    await first;
    assert.deepEqual(fake.requests[0], {
      namespace: 'shop',
      workload: 'web',
      labels: { app: 'web' },
      namedPorts: {},
    });
    assert.equal(authz.protocolOf(8080), 'http1');
    assert.equal(authz.protocolOf(9000), 'opaque');
    assert.equal(authz.checkConnection(9000, ALICE).allowed, false);
    // Declared http1: without `traffic`, the connection counts as HTTP.
    assert.equal(authz.checkConnection(8080, ANON).policy, 'shop/public-read');
    // Declared detect: without `traffic`, opaque (safe), so the route-scoped one does not admit.
    assert.equal(authz.checkConnection(5432, BOB).allowed, false);
    assert.equal(authz.checkConnection(5432, BOB, 'http').allowed, true);

    const changed = nextChange(authz);
    fake.set({
      servers: [
        {
          name: 'shop/locked',
          port: 9000,
          protocol: 'opaque',
          rateLimit: null,
          authorizations: [authorization('shop/all', { unauthenticated: true })],
        },
      ],
    });
    await changed;
    assert.equal(authz.checkConnection(9000, ANON).policy, 'shop/all');
    assert.equal(authz.protocolOf(8080), null);

    // The control plane goes away: the last policy stays.
    fake.stop();
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(authz.checkConnection(9000, ANON).policy, 'shop/all');
    assert.equal(
      authz.checkRequest(8080, ANON, { method: 'GET', path: '/' }).policy,
      'default:all-unauthenticated',
    );

    // It comes back on the same port with another policy: the proxy watches again and applies it.
    fake = await startFakePolicyServer(port);
    const back = nextChange(authz, 10_000);
    fake.set({ servers: [] });
    await back;
    assert.equal(authz.protocolOf(9000), null);
    assert.ok(fake.requests.length >= 1);
  } finally {
    authz.close();
    fake.stop();
  }
});

test('an identical policy after a re-watch does not call onChange again', async () => {
  const fake = await startFakePolicyServer();
  fake.set(POLICY);
  const authz = createAuthorizer({
    defaultPolicy: 'deny',
    address: `127.0.0.1:${fake.port}`,
    namespace: 'shop',
    workload: 'web',
    log: silentLogger,
  });
  try {
    await authz.firstPolicy;
    let calls = 0;
    authz.onChange(() => calls++);
    fake.set(POLICY);
    fake.set({ ...POLICY });
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(calls, 0);
  } finally {
    authz.close();
    fake.stop();
  }
});

test('a proxy without a policy address never loads gRPC; with one it does', async () => {
  const { spawnSync } = await import('node:child_process');
  const authorizer = new URL('../../src/proxy/policy/authorizer.ts', import.meta.url).href;
  const loaded = (address: string | undefined): string[] => {
    const script = `import { registerHooks } from 'node:module';
const seen = [];
registerHooks({ resolve(specifier, context, next) { seen.push(specifier); return next(specifier, context); } });
const { createAuthorizer } = await import(${JSON.stringify(authorizer)});
const { silentLogger } = await import(${JSON.stringify(new URL('../../src/core/log.ts', import.meta.url).href)});
const a = createAuthorizer({ defaultPolicy: 'deny', namespace: 'ns', workload: 'w', log: silentLogger, address: ${JSON.stringify(address)} });
await new Promise((r) => setTimeout(r, 300));
a.close();
console.log(JSON.stringify(seen.filter((s) => s.includes('grpc'))));`;
    const result = spawnSync(process.execPath, ['--input-type=module', '-e', script], {
      encoding: 'utf8',
      timeout: 20_000,
    });
    assert.equal(result.status, 0, result.stderr);
    return JSON.parse(result.stdout) as string[];
  };
  assert.deepEqual(loaded(undefined), []);
  assert.ok(loaded('127.0.0.1:1').includes('@grpc/grpc-js'));
});
