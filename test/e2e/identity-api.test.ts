// The Identity API end to end on loopback: a control plane (startControlPlane over a LocalWatcher
// on a temp state folder) with the identity component, called by a real gRPC client the way a
// proxy calls it. A registered workload's token and CSR get a chain openssl verifies; a bad token,
// someone else's identity, a malformed CSR and a stopped workload's token get the right statuses;
// the HTTP API shows the authority and its metrics count; and an anchor rotation started over HTTP
// by an operator (src/control/operator-auth.ts; test/unit/control-auth.test.ts covers refusals)
// runs through its phases on the component's own timers (leaf lifetime 2 s) while certificates
// keep being issued and verify against the bundle they came with.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { webcrypto } from 'node:crypto';
import { readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { loadIdentityApi, type ApiCertifyResponseOutput, type IdentityClient } from '../../src/api/load.ts';
import { workloadPath, writeWorkloadFile } from '../../src/control/discovery/local-state.ts';
import { mintWorkloadToken } from '../../src/control/identity/tokens.ts';
import { startIdentityControlPlane } from '../helpers/identity-control-plane.ts';
import { EC_P256, toPem, x509 } from '../helpers/x509.ts';

const ID = 'spiffe://cluster.local/ns/default/sa/web';
const TIMEOUT_MS = 15_000;
const OPERATOR_TOKEN = 'an-operator-token-of-at-least-32-characters';
const AS_OPERATOR = { method: 'POST', headers: { authorization: `Bearer ${OPERATOR_TOKEN}` } };

async function makeCsr(identity = ID): Promise<Buffer> {
  const keys = (await webcrypto.subtle.generateKey(EC_P256, false, [
    'sign',
    'verify',
  ])) as webcrypto.CryptoKeyPair;
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({
    keys,
    signingAlgorithm: EC_P256,
    extensions: [new x509.SubjectAlternativeNameExtension([{ type: 'url', value: identity }])],
  });
  return Buffer.from(csr.rawData);
}

function certify(client: IdentityClient, request: { identity: string; token: string; csr: Buffer }) {
  return new Promise<ApiCertifyResponseOutput>((resolve, reject) => {
    client.Certify(
      {
        identity: request.identity,
        token: Buffer.from(request.token),
        certificateSigningRequest: request.csr,
      },
      { deadline: Date.now() + TIMEOUT_MS },
      (error, response) => (error ? reject(error) : resolve(response!)),
    );
  });
}

async function refusedWith(promise: Promise<unknown>, code: grpc.status, message: RegExp): Promise<void> {
  await assert.rejects(promise, (error: grpc.ServiceError) => {
    assert.equal(error.code, code, `${grpc.status[error.code]}: ${error.details}`);
    assert.match(error.details, message);
    return true;
  });
}

/** openssl verify of a Certify response against its own bundle. */
async function verifies(dir: string, response: ApiCertifyResponseOutput): Promise<boolean> {
  await writeFile(join(dir, 'bundle.pem'), response.trustAnchorsPem);
  await writeFile(join(dir, 'chain.pem'), response.intermediateCertificates.map((c) => toPem(c)).join(''));
  await writeFile(join(dir, 'leaf.pem'), toPem(response.leafCertificate));
  try {
    const out = execFileSync(
      'openssl',
      [
        'verify',
        '-CAfile',
        join(dir, 'bundle.pem'),
        '-untrusted',
        join(dir, 'chain.pem'),
        join(dir, 'leaf.pem'),
      ],
      {
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    return out.toString().includes(': OK');
  } catch {
    return false;
  }
}

test('Certify through a running control plane, its HTTP API, and an anchor rotation on timers', async (t) => {
  const { root, ca, plane } = await startIdentityControlPlane(t, {
    trustDomain: 'cluster.local',
    prepare: (root) =>
      writeWorkloadFile(root, 'default', 'web-1', { service: 'web', address: '127.0.0.1', port: 8080 }),
    ca: (root) => ({
      bundlePath: join(root, 'trust-anchor.pem'),
      leafLifetimeMs: 2000, // each rotation phase lasts this long: room for a slow machine's polls
    }),
    plane: () => ({ operatorToken: OPERATOR_TOKEN }),
  });
  const Identity = loadIdentityApi().Identity;
  const client = new Identity(plane.grpc, grpc.credentials.createInsecure());
  t.after(() => client.close());
  const token = await mintWorkloadToken(root, {
    namespace: 'default',
    serviceAccount: 'web',
    instance: 'web-1',
    ttlMs: 60_000,
  });

  const issued = await certify(client, { identity: ID, token, csr: await makeCsr() });
  assert.ok(await verifies(root, issued));
  assert.equal(issued.trustAnchorsPem, await readFile(join(root, 'trust-anchor.pem'), 'utf8'));
  assert.ok(issued.validUntilMs > Date.now() && issued.validUntilMs <= Date.now() + 3000);

  await refusedWith(
    certify(client, { identity: ID, token: 'tt1.bogus.token', csr: await makeCsr() }),
    grpc.status.UNAUTHENTICATED,
    /not a valid workload token/,
  );
  await refusedWith(
    certify(client, { identity: ID, token: '', csr: await makeCsr() }),
    grpc.status.UNAUTHENTICATED,
    /no token/,
  );
  const db = 'spiffe://cluster.local/ns/default/sa/db';
  await refusedWith(
    certify(client, { identity: db, token, csr: await makeCsr(db) }),
    grpc.status.PERMISSION_DENIED,
    /grants spiffe:\/\/cluster.local\/ns\/default\/sa\/web/,
  );
  await refusedWith(
    certify(client, { identity: ID, token, csr: await makeCsr(db) }),
    grpc.status.INVALID_ARGUMENT,
    /names "spiffe:\/\/cluster.local\/ns\/default\/sa\/db"/,
  );
  await refusedWith(
    certify(client, { identity: ID, token, csr: Buffer.from('junk') }),
    grpc.status.INVALID_ARGUMENT,
    /malformed/,
  );
  await refusedWith(
    certify(client, { identity: 'web', token, csr: await makeCsr() }),
    grpc.status.INVALID_ARGUMENT,
    /is not spiffe:\/\//,
  );

  const http = `http://${plane.http}`;
  const status = (await (await fetch(`${http}/api/identity`)).json()) as {
    issued: number;
    rotation: { phase: string };
    anchors: unknown[];
  };
  assert.equal(status.issued, 1);
  assert.equal(status.rotation.phase, 'idle');
  assert.equal(status.anchors.length, 1);
  const metrics = await (await fetch(`${http}/metrics`)).text();
  assert.match(metrics, /^trellis_identity_certificates_issued_total 1$/m);
  assert.match(metrics, /^trellis_identity_certify_errors_total\{code="UNAUTHENTICATED"\} 2$/m);
  assert.match(metrics, /^trellis_identity_certify_errors_total\{code="PERMISSION_DENIED"\} 1$/m);
  assert.match(metrics, /^trellis_identity_certify_errors_total\{code="INVALID_ARGUMENT"\} 3$/m);
  assert.match(
    metrics,
    /^trellis_identity_anchor_expiry_timestamp_seconds\{fingerprint="[0-9a-f]{64}"\} \d+$/m,
  );
  assert.match(metrics, /^trellis_identity_issuer_expiry_timestamp_seconds \d+$/m);
  assert.equal((await fetch(`${http}/api/identity/rotate`)).status, 405);

  // An anchor rotation, driven by the component's timers; certificates keep coming throughout.
  const started = await fetch(`${http}/api/identity/rotate`, AS_OPERATOR);
  assert.equal(started.status, 200);
  assert.equal(((await started.json()) as { phase: string }).phase, 'anchor-added');
  assert.equal((await fetch(`${http}/api/identity/rotate`, AS_OPERATOR)).status, 409);
  const phases = new Set<string>();
  const bundles = new Set<number>();
  const deadline = Date.now() + TIMEOUT_MS;
  for (let i = 0; i < 500; i++) {
    const phase = ((await (await fetch(`${http}/api/identity`)).json()) as { rotation: { phase: string } })
      .rotation.phase;
    phases.add(phase);
    const response = await certify(client, { identity: ID, token, csr: await makeCsr() });
    assert.ok(
      await verifies(root, response),
      `a certificate issued in phase ${phase} verifies against its bundle`,
    );
    bundles.add(x509.PemConverter.decode(response.trustAnchorsPem).length);
    if (phase === 'idle' && phases.size > 1) break;
    assert.ok(Date.now() < deadline, `rotation did not finish; phases seen: ${[...phases].join(', ')}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  assert.deepEqual([...phases], ['anchor-added', 'issuer-replaced', 'idle']);
  assert.deepEqual([...bundles].sort(), [1, 2]);
  assert.equal(ca.anchorCerts.length, 1);
  assert.notEqual(ca.trustAnchorsPem, issued.trustAnchorsPem);
  assert.equal(await readFile(join(root, 'trust-anchor.pem'), 'utf8'), ca.trustAnchorsPem);

  // The workload stops: its token, replayed, is worth nothing.
  await rm(workloadPath(root, 'default', 'web-1'));
  await refusedWith(
    certify(client, { identity: ID, token, csr: await makeCsr() }),
    grpc.status.UNAUTHENTICATED,
    /revoked/,
  );
});
