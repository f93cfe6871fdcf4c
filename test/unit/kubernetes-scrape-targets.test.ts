// What the control plane scrapes on Kubernetes (`trellis stat`, `edges`, `routes`, the dashboard,
// Prometheus's service discovery): the ready meshed pods' proxies at their pod IPs' admin ports.
// Before, a control plane on Kubernetes had no scrape targets at all and every view was empty.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { V1Pod } from '@kubernetes/client-node';
import { kubernetesScrapeTargets } from '../../src/control/tap/kubernetes-tap-targets.ts';

const pod = (name: string, o: { ready?: boolean; injected?: boolean; admin?: boolean } = {}): V1Pod => ({
  metadata: {
    name,
    namespace: 'shop',
    labels: { app: 'web', 'pod-template-hash': '7d4b9c8f5' },
    ownerReferences: [{ apiVersion: 'apps/v1', kind: 'ReplicaSet', name: 'web-7d4b9c8f5', uid: 'u' }],
    ...(o.injected === false ? {} : { annotations: { 'trellis.dev/proxy-injected': 'true' } }),
  },
  spec: {
    serviceAccountName: 'web',
    initContainers:
      o.injected === false
        ? []
        : [
            {
              name: 'trellis-proxy',
              ports: [
                ...(o.admin === false ? [] : [{ name: 'trellis-admin', containerPort: 4191 }]),
                { name: 'trellis-tap', containerPort: 4190 },
              ],
            },
          ],
    containers: [{ name: 'app', ports: [{ containerPort: 8080 }] }],
  },
  status: {
    phase: 'Running',
    podIP: '10.1.2.3',
    conditions: [{ type: 'Ready', status: o.ready === false ? 'False' : 'True' }],
  },
});

test('the scrape targets on Kubernetes are the ready meshed pods, at their admin ports', () => {
  const targets = kubernetesScrapeTargets(
    [
      pod('web-7d4b9c8f5-9hzlm'),
      pod('unready', { ready: false }),
      pod('plain', { injected: false }),
      pod('no-admin', { admin: false }),
    ],
    'cluster.local',
  );
  assert.deepEqual(targets, [
    {
      namespace: 'shop',
      workload: 'web',
      instance: 'web-7d4b9c8f5-9hzlm',
      admin: '10.1.2.3:4191',
      meshed: true,
      identity: 'spiffe://cluster.local/ns/shop/sa/web',
      addresses: ['10.1.2.3:8080'],
    },
    {
      namespace: 'shop',
      workload: 'web',
      instance: 'no-admin',
      admin: null,
      meshed: true,
      identity: 'spiffe://cluster.local/ns/shop/sa/web',
      addresses: ['10.1.2.3:8080'],
    },
  ]);
});
