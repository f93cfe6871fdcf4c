// The mesh conformance setup (conformance-mesh.ts) on Kubernetes: `trellis control` (a real process)
// over the fake API server (test/fake-kube), which holds the suite's objects as
// conformance/mesh/manifests.yaml has them: the three Services, the pods echo-v1 and echo-v2
// (injected: annotated as such, each with its ServiceAccount) and the EndpointSlices that select
// them (`echo` both). Each pod's sidecar and each client is an in-process proxy whose discovery
// and routes come from that control plane; identities are the test CA's for the pods' SPIFFE ids in
// trust domain mesh.test, which the control plane is told. Each pod has a loopback address of its
// own (127.0.0.2, 127.0.0.3), as pod IPs are distinct: the control plane finds a pod by its IP.
// Routes are created and deleted with the real `kubectl`, each waited for until the control plane
// serves it (GET /api/routes) and has written its status back, Accepted. Chosen by TRELLIS_CONFORMANCE_WORKLOADS=kubernetes.
import { FakeKubeServer } from '../fake-kube/server.ts';
import { PROXY_INJECTED_ANNOTATION } from '../../src/control/discovery/kubernetes-translate.ts';
import { startCli, waitFor, type Running } from './cli.ts';
import { fileIdentity } from '../../src/proxy/identity/file.ts';
import { idOf, issueLeaf, startMeshWorld, TRUST_DOMAIN, writeIdentityDir } from './mesh-pki.ts';
import { startEchoApp, type EchoApp } from './mesh-echo.ts';
import { portOf } from './running-proxy.ts';
import {
  conformanceMesh,
  inProcessClient,
  servicesYaml,
  untilRoutesServed,
  type BoundListener,
  type ConformanceMesh,
} from './conformance-mesh.ts';
import { kubectl } from './kube-control.ts';

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

const POD_HOSTS = { 'echo-v1': '127.0.0.2', 'echo-v2': '127.0.0.3' } as const;
const PORT_NAMES = ['http', 'http-alt', 'grpc'] as const;

function objects(meshNs: string, inbound: Record<'echo-v1' | 'echo-v2', number>): string {
  const docs: string[] = [servicesYaml(meshNs)];
  for (const pod of ['echo-v1', 'echo-v2'] as const) {
    docs.push(`apiVersion: v1
kind: Pod
metadata:
  name: ${pod}
  namespace: ${meshNs}
  labels: { app: echo, version: ${pod.slice(5)} }
  annotations: { ${PROXY_INJECTED_ANNOTATION}: "true" }
spec:
  serviceAccountName: ${pod}
  containers: [{ name: echo, image: echo }]
status:
  phase: Running
  podIP: ${POD_HOSTS[pod]}
  podIPs: [{ ip: ${POD_HOSTS[pod]} }]
`);
  }
  const slice = (
    service: string,
    pods: readonly ('echo-v1' | 'echo-v2')[],
  ) => `apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: ${service}-slice
  namespace: ${meshNs}
  labels: { kubernetes.io/service-name: ${service} }
addressType: IPv4
ports: [${PORT_NAMES.map((n) => `{ name: ${n}, port: PORT }`).join(', ')}]
endpoints:
${pods.map((p) => `  - { addresses: [${POD_HOSTS[p]}], conditions: { ready: true }, targetRef: { kind: Pod, name: ${p}, namespace: ${meshNs} } }`).join('\n')}
`;
  // A slice's ports apply to all its endpoints: one slice per pod where the pods' ports differ.
  for (const pod of ['echo-v1', 'echo-v2'] as const) {
    docs.push(slice(pod, [pod]).replaceAll('PORT', String(inbound[pod])));
    docs.push(
      slice('echo', [pod]).replace('echo-slice', `echo-${pod}`).replaceAll('PORT', String(inbound[pod])),
    );
  }
  return docs.join('---\n');
}

export async function startConformanceKubeMesh(meshNs: string): Promise<ConformanceMesh> {
  const stops: (() => Promise<unknown>)[] = [];
  const owner = { after: (fn: () => Promise<unknown>) => void stops.push(fn) };
  const apps: EchoApp[] = [];
  const kube = new FakeKubeServer();
  await kube.start();
  // The in-process proxies and the test CA; its own control plane is not used.
  const world = await startMeshWorld();
  const close = async (): Promise<void> => {
    await world.close();
    for (const app of apps) app.close();
    for (const stop of stops.reverse()) await stop().catch(() => {});
    await kube.close();
  };
  try {
    process.stderr.write(`conformance: Kubernetes objects on the fake API server ${kube.url}\n`);
    // prettier-ignore
    const control: Running = startCli(owner, ['control', '--kubeconfig-server', kube.url, '--trust-domain', TRUST_DOMAIN,
      '--grpc-listen', '127.0.0.1:0', '--http-listen', '127.0.0.1:0', '--log-level', 'warn']);
    const ready = await waitFor('trellis control', async () => {
      const line = control.stdout().split('\n')[0];
      return line === undefined || !control.stdout().includes('\n')
        ? null
        : (JSON.parse(line) as Record<string, string>);
    });
    const grpc = ready['grpc']!;
    const http = ready['http']!;
    const identity = async (sa: string, namespace: string) => {
      const leaf = await issueLeaf(world.ca, idOf(sa, namespace));
      return fileIdentity(
        await writeIdentityDir(`${world.root}/identities/${namespace}-${sa}`, leaf, world.ca.certPem),
      );
    };
    const inbound: Record<string, number> = {};
    for (const pod of ['echo-v1', 'echo-v2'] as const) {
      const app = await startEchoApp(pod, meshNs);
      apps.push(app);
      const proxy = await world.proxy({
        identity: await identity(pod, meshNs),
        app: app.port,
        config: {
          inboundListen: `${POD_HOSTS[pod]}:0`,
          discovery: { address: grpc, failFastMs: 3000 },
          workload: { name: pod, namespace: meshNs },
        },
      });
      inbound[pod] = portOf(proxy, 'inbound');
    }
    await kubectl(kube.url, 'apply', objects(meshNs, inbound as Record<'echo-v1' | 'echo-v2', number>));

    let clients = 0;
    const mesh = conformanceMesh({
      world,
      pods: {
        'echo-v1': `${POD_HOSTS['echo-v1']}:${inbound['echo-v1']}`,
        'echo-v2': `${POD_HOSTS['echo-v2']}:${inbound['echo-v2']}`,
      },
      client: async (opts: { namespace?: string; bound?: readonly BoundListener[] } = {}) =>
        inProcessClient(world, await identity('echo-v1', meshNs), `client-${++clients}`, opts, grpc),
      async applyRoutes(yaml) {
        await kubectl(kube.url, 'apply', yaml);
        // Kubernetes objects: the control plane wrote each route's status back, Accepted for
        // every parent (the suite's own precondition, HTTPRouteMustHaveParents / GRPCRoute's).
        for (const [kind, namespace, name] of await untilRoutesServed(http, yaml, true)) {
          await waitFor(`${kind} ${namespace}/${name} Accepted in its status`, async () => {
            const parents = ((kube.get(kind, namespace, name) as Json | undefined)?.['status']?.['parents'] ??
              []) as Json[];
            const ours = parents.filter((p) => p['controllerName'] === 'trellis.dev/mesh');
            const accepted = (p: Json) =>
              (p['conditions'] as Json[]).some((c) => c['type'] === 'Accepted' && c['status'] === 'True');
            return ours.length > 0 && ours.every(accepted) ? true : null;
          });
        }
        return async () => {
          await kubectl(kube.url, 'delete', yaml);
          await untilRoutesServed(http, yaml, false);
        };
      },
      close,
    });
    return mesh;
  } catch (error) {
    await close();
    throw error;
  }
}
