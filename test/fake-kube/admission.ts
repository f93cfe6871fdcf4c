// The fake API server's mutating admission (server.ts calls it when a Pod is created): what the
// real kube-apiserver does with a MutatingWebhookConfiguration. For each webhook whose rules take
// pods CREATE and whose namespaceSelector takes the namespace (matchExpressions on labels, with
// `kubernetes.io/metadata.name` set as the real server sets it), it POSTs a real AdmissionReview v1
// over HTTPS to the webhook's Service (at the address the test maps it to), verifying the server
// with the caBundle for the Service's DNS name `NAME.NAMESPACE.svc`, within timeoutSeconds; it
// applies the JSONPatch of the answer. A webhook that fails (unreachable, timeout, bad answer) is
// skipped with failurePolicy Ignore and refuses the pod with Fail.
import { request } from 'node:https';
import { randomUUID } from 'node:crypto';
import { applyPatch } from '../../src/control/injector/patch.ts';
import type { KubeObject } from './server.ts';

/** Where the test runs a Service: HOST:PORT, or undefined when it runs nowhere. */
export type ServiceAddress = (namespace: string, name: string, port: number) => string | undefined;

export interface AdmissionCall {
  readonly webhook: string;
  readonly outcome: 'patched' | 'unchanged' | 'failed';
  readonly detail?: string;
}

interface Expression {
  key: string;
  operator: 'In' | 'NotIn' | 'Exists' | 'DoesNotExist';
  values?: string[];
}

interface Webhook {
  name: string;
  clientConfig: {
    service?: { name: string; namespace: string; path?: string; port?: number };
    caBundle?: string;
  };
  rules?: { operations?: string[]; apiGroups?: string[]; resources?: string[] }[];
  namespaceSelector?: { matchLabels?: Record<string, string>; matchExpressions?: Expression[] };
  failurePolicy?: 'Ignore' | 'Fail';
  timeoutSeconds?: number;
}

function selects(selector: Webhook['namespaceSelector'], labels: Record<string, string>): boolean {
  if (selector === undefined) return true;
  const labelsMatch = Object.entries(selector.matchLabels ?? {}).every(([k, v]) => labels[k] === v);
  return (
    labelsMatch &&
    (selector.matchExpressions ?? []).every((e) => {
      const value = labels[e.key];
      if (e.operator === 'In') return value !== undefined && (e.values ?? []).includes(value);
      if (e.operator === 'NotIn') return value === undefined || !(e.values ?? []).includes(value);
      if (e.operator === 'Exists') return value !== undefined;
      return value === undefined;
    })
  );
}

const takesPodCreate = (webhook: Webhook): boolean =>
  (webhook.rules ?? []).some(
    (r) =>
      (r.operations ?? []).some((o) => o === 'CREATE' || o === '*') &&
      (r.apiGroups ?? []).some((g) => g === '' || g === '*') &&
      (r.resources ?? []).some((x) => x === 'pods' || x === '*'),
  );

function post(address: string, webhook: Webhook, body: string): Promise<unknown> {
  const service = webhook.clientConfig.service!;
  const colon = address.lastIndexOf(':');
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: address.slice(0, colon),
        port: Number(address.slice(colon + 1)),
        method: 'POST',
        path: service.path ?? '/',
        ca: Buffer.from(webhook.clientConfig.caBundle ?? '', 'base64').toString(),
        servername: `${service.name}.${service.namespace}.svc`,
        headers: { 'content-type': 'application/json', accept: 'application/json' },
        timeout: (webhook.timeoutSeconds ?? 10) * 1000,
      },
      (res) => {
        let text = '';
        res.on('data', (d: Buffer) => (text += d.toString()));
        res.on('end', () => {
          try {
            if (res.statusCode !== 200) throw new Error(`HTTP ${res.statusCode}`);
            resolve(JSON.parse(text));
          } catch (error) {
            reject(error as Error);
          }
        });
      },
    );
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    req.end(body);
  });
}

/** `pod` (created in `namespace`, whose labels are `namespaceLabels`) after every webhook; throws when one with failurePolicy Fail fails. */
export async function admitPod(
  pod: KubeObject,
  namespace: string,
  namespaceLabels: Record<string, string>,
  configurations: readonly KubeObject[],
  serviceAddress: ServiceAddress,
  calls: AdmissionCall[],
): Promise<KubeObject> {
  let object = pod;
  const labels = { ...namespaceLabels, 'kubernetes.io/metadata.name': namespace };
  for (const configuration of configurations) {
    for (const webhook of (configuration['webhooks'] ?? []) as Webhook[]) {
      if (!takesPodCreate(webhook) || !selects(webhook.namespaceSelector, labels)) continue;
      const uid = randomUUID();
      try {
        const service = webhook.clientConfig.service;
        const address = service && serviceAddress(service.namespace, service.name, service.port ?? 443);
        if (address === undefined) throw new Error('no endpoints for the service');
        const answer = (await post(
          address,
          webhook,
          JSON.stringify({
            apiVersion: 'admission.k8s.io/v1',
            kind: 'AdmissionReview',
            request: {
              uid,
              kind: { group: '', version: 'v1', kind: 'Pod' },
              resource: { group: '', version: 'v1', resource: 'pods' },
              requestKind: { group: '', version: 'v1', kind: 'Pod' },
              requestResource: { group: '', version: 'v1', resource: 'pods' },
              ...(object.metadata.name ? { name: object.metadata.name } : {}),
              namespace,
              operation: 'CREATE',
              userInfo: { username: 'fake-kube', groups: ['system:authenticated'] },
              object,
              oldObject: null,
              dryRun: false,
              options: { apiVersion: 'meta.k8s.io/v1', kind: 'CreateOptions' },
            },
          }),
        )) as { response?: { uid?: string; allowed?: boolean; patch?: string; patchType?: string } };
        const response = answer.response;
        if (response?.uid !== uid) throw new Error('the answer has another uid');
        if (response.allowed !== true) throw new Error('the webhook refused the pod');
        if (response.patch !== undefined) {
          if (response.patchType !== 'JSONPatch') throw new Error(`patchType ${response.patchType}`);
          object = applyPatch(object, JSON.parse(Buffer.from(response.patch, 'base64').toString()));
          calls.push({ webhook: webhook.name, outcome: 'patched' });
        } else calls.push({ webhook: webhook.name, outcome: 'unchanged' });
      } catch (error) {
        calls.push({ webhook: webhook.name, outcome: 'failed', detail: (error as Error).message });
        if (webhook.failurePolicy === 'Fail')
          throw new Error(`webhook ${webhook.name}: ${(error as Error).message}`);
      }
    }
  }
  return object;
}
