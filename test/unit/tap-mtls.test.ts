// The control plane's side of tapping over mTLS: its own client certificate (issued by its own
// authority, renewed at 70% ± 5% of the lifetime, retried after a failure, a new context when the
// trust anchors change) in virtual time, and the Kubernetes tap targets read from pods (which
// pods, which port, which identity).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import type { V1Pod } from '@kubernetes/client-node';
import { CertificateAuthority } from '../../src/control/identity/ca.ts';
import { TapClientCertificate, type LeafIssuer } from '../../src/control/tap/tap-client-certificate.ts';
import { kubernetesTapTargets } from '../../src/control/tap/kubernetes-tap-targets.ts';
import { FakeClock } from '../../src/core/clock.ts';
import { controlPlaneId } from '../../src/core/spiffe.ts';

const ID = controlPlaneId('cluster.local');

test('tap client certificate: issued at once for the control plane identity, renewed before expiry, retried after a failure', async () => {
  const clock = new FakeClock(Date.UTC(2026, 0, 1));
  const ca = await CertificateAuthority.open({
    dir: null,
    trustDomain: 'cluster.local',
    leafLifetimeMs: 100_000,
    now: () => clock.now(),
  });
  let failing = false;
  let anchors = ca.trustAnchorsPem;
  let calls = 0;
  const issuer: LeafIssuer = {
    issueToKey: (key, id) => {
      calls++;
      if (failing) throw new Error('the issuer expired');
      return ca.issueToKey(key, id);
    },
    get trustAnchorsPem() {
      return anchors;
    },
  };
  const cert = new TapClientCertificate({ issuer, id: ID, now: () => clock.now(), timers: clock });
  const first = cert.tlsOptions();
  assert.notEqual(first, null);
  assert.equal(first!.id, ID);
  assert.equal(cert.issued, 1);
  assert.equal(cert.tlsOptions(), first, 'the context is built once per leaf');
  const firstExpiry = cert.expiresAtMs!;
  // Issued by the authority itself.
  assert.equal(ca.issued, 1);

  // Renewal at 70% of the lifetime.
  clock.advance(69_000);
  assert.equal(cert.issued, 1);
  clock.advance(2_000);
  assert.equal(cert.issued, 2);
  assert.ok(cert.expiresAtMs! > firstExpiry);
  const second = cert.tlsOptions();
  assert.notEqual(second, first);

  // New trust anchors (a rotation): a new context with them, same leaf.
  anchors = anchors + anchors;
  assert.notEqual(cert.tlsOptions(), second);

  // The issuer fails: the current leaf stays in use until it expires, retries come every minute.
  failing = true;
  const before = calls;
  clock.advance(80_000);
  assert.equal(calls, before + 1);
  assert.notEqual(cert.tlsOptions(), null);
  clock.advance(60_000);
  assert.equal(calls, before + 2);
  assert.equal(cert.tlsOptions(), null, 'no context from an expired leaf');
  failing = false;
  clock.advance(60_000);
  assert.notEqual(cert.tlsOptions(), null);
  cert.close();
  const after = calls;
  clock.advance(10 * 60_000);
  assert.equal(calls, after, 'closed: no more renewals');
});

const pod = (
  overrides: {
    name?: string;
    ready?: boolean;
    injected?: boolean;
    tapPort?: number | null;
    hostNetwork?: boolean;
  } = {},
): V1Pod => ({
  metadata: {
    name: overrides.name ?? 'web-7d4b9c8f5-9hzlm',
    namespace: 'shop',
    labels: { 'pod-template-hash': '7d4b9c8f5' },
    ownerReferences: [
      { apiVersion: 'apps/v1', kind: 'ReplicaSet', name: 'web-7d4b9c8f5', uid: 'u', controller: true },
    ],
    ...(overrides.injected === false ? {} : { annotations: { 'trellis.dev/proxy-injected': 'true' } }),
  },
  spec: {
    serviceAccountName: 'web',
    ...(overrides.hostNetwork === true ? { hostNetwork: true } : {}),
    initContainers:
      overrides.injected === false
        ? []
        : [
            {
              name: 'trellis-proxy',
              ports: [
                { name: 'trellis-admin', containerPort: 4191 },
                ...(overrides.tapPort === null
                  ? []
                  : [{ name: 'trellis-tap', containerPort: overrides.tapPort ?? 4190 }]),
              ],
            },
          ],
    containers: [{ name: 'app', ports: [{ containerPort: 8080 }] }],
  },
  status: {
    phase: 'Running',
    podIP: '10.1.2.3',
    conditions: [{ type: 'Ready', status: overrides.ready === false ? 'False' : 'True' }],
  },
});

test('kubernetes tap targets: ready injected pods, tapped at their pod IP tap port with their ServiceAccount identity; no plain admin path', () => {
  const [web, ...rest] = kubernetesTapTargets(
    [
      pod(),
      pod({ name: 'unready', ready: false }),
      pod({ name: 'plain', injected: false }),
      pod({ name: 'host', hostNetwork: true }),
      pod({ name: 'old', tapPort: null }),
    ],
    'cluster.local',
  );
  assert.deepEqual(web, {
    namespace: 'shop',
    workload: 'web',
    instance: 'web-7d4b9c8f5-9hzlm',
    admin: null,
    meshed: true,
    identity: 'spiffe://cluster.local/ns/shop/sa/web',
    addresses: ['10.1.2.3:8080'],
    tap: { address: '10.1.2.3:4190', identity: 'spiffe://cluster.local/ns/shop/sa/web' },
  });
  // A pod injected before the tap port existed: listed, but with nothing to tap it by.
  assert.deepEqual(
    rest.map((t) => [t.instance, t.admin, t.tap]),
    [['old', null, null]],
  );
});

test('tap client certificate: the leaf names only the control plane identity and chains to the anchors', async () => {
  const ca = await CertificateAuthority.open({ dir: null, trustDomain: 'cluster.local' });
  let leafPem = '';
  const cert = new TapClientCertificate({
    issuer: {
      issueToKey: (key, id) => {
        const issued = ca.issueToKey(key, id);
        leafPem = new X509Certificate(issued.leafDer).toString();
        return issued;
      },
      trustAnchorsPem: ca.trustAnchorsPem,
    },
    id: ID,
  });
  cert.close();
  const leaf = new X509Certificate(leafPem);
  assert.equal(leaf.subjectAltName, `URI:${ID}`);
  const issuer = new X509Certificate(ca.issuerCert.pem);
  assert.ok(leaf.checkIssued(issuer) && leaf.verify(issuer.publicKey));
});
