// Runs a Pod object (as the injector or `trellis inject` made it) the way the kubelet would, for
// end-to-end tests without a cluster: in a network namespace of its own on the test's pod network
// (pod-network.ts, 198.18.0.0/24), it starts the init containers in order (each to completion;
// native sidecars, `restartPolicy: Always`, until their startupProbe passes), then the containers,
// waits for their readinessProbes, and writes the pod's status (podIP, Ready) and the EndpointSlices
// of the Services that select it into the fake API server, as the kubelet and the EndpointSlice
// controller do. Each container runs as its securityContext.runAsUser (setpriv), with its env
// (values and the downward API fieldRefs metadata.name/namespace, spec.serviceAccountName,
// spec.nodeName, status.podIP) and `$(VAR)` expanded in its command and args as Kubernetes does.
//
// What differs from a cluster, and why:
// - Images are not run. There is one image, Trellis: a container's args run as
//   `node src/cli/main.ts ARGS`; a container the test names in `commands` runs that command instead.
// - No mount namespace of the pod (bind mounts would need their mount points made in the host's
//   own file system): a volume's files live in a folder of the test, and the container's command,
//   args and env have the volume's mountPath rewritten to that folder.
//   Volumes: emptyDir, and projected serviceAccountToken (a token the fake API server's TokenReview
//   accepts for the pod's ServiceAccount and audience, test/fake-kube/tokens.ts).
// - No cluster DNS: the pod's /etc/hosts and /etc/resolv.conf (`ip netns exec` mounts
//   /etc/netns/NAME/* over /etc/* for the pod's processes) name every Service that has a
//   ClusterIP when the pod starts as NAME.NS.svc.cluster.local (and NAME.NS.svc, and NAME in its
//   own namespace); the resolver answers nothing else, at once.
// - ClusterIPs are not routed by a kube-proxy: a connection to one works only when a proxy
//   intercepts it, or when the test exposes it on the node (PodNetwork.expose).
// - Probes: httpGet only, from the node; a failing container is not restarted (the run fails).
// - Read-only root file systems, capabilities and resources are not enforced.
import { spawnSync, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import type { FakeKubeServer, KubeObject } from '../fake-kube/server.ts';
import type { ServiceAccountTokens } from '../fake-kube/tokens.ts';
import { stopChild, type Netns } from '../e2e/netns.ts';
import { NODE_ADDRESS, type PodNetwork } from './pod-network.ts';
import { CLI, NODE, REPO } from './proxy-process.ts';

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

const CLUSTER_DOMAIN = 'cluster.local';
const NODE_NAME = 'test-node';
/** How long a probe may take to pass before the pod counts as failed. */
const PROBE_DEADLINE_MS = 20_000;
/** How long an init container may run. */
const INIT_DEADLINE_MS = 30_000;
const LOG_LIMIT = 16_000;

export interface PodRunnerOptions {
  readonly kube: FakeKubeServer;
  readonly network: PodNetwork;
  readonly tokens: ServiceAccountTokens;
  /** The command of each container that is not Trellis, by container name. */
  readonly commands?: Readonly<Record<string, readonly string[]>>;
}

export interface RunningContainer {
  readonly proc: ChildProcess;
  readonly exited: Promise<number | null>;
  stdout(): string;
  stderr(): string;
}

export interface RunningPod {
  readonly ip: string;
  readonly ns: Netns;
  container(name: string): RunningContainer;
  /** Every container's output, for failure messages. */
  logs(): string;
}

/**
 * Kubernetes' expansion of `$(VAR)` from `env` in commands, args and env values: `$$` is a literal
 * `$`, a reference to a variable not in `env` stays as written.
 */
export function expandVariables(text: string, env: ReadonlyMap<string, string>): string {
  return text.replace(/\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)/g, (match, name: string | undefined) =>
    name === undefined ? '$' : (env.get(name) ?? match),
  );
}

/** The value of a downward API fieldRef of the pod (undefined for one this runner does not know). */
function fieldValue(pod: KubeObject, ip: string, path: string): string | undefined {
  const fields: Record<string, string | undefined> = {
    'metadata.name': pod.metadata.name,
    'metadata.namespace': pod.metadata.namespace,
    'metadata.uid': pod.metadata.uid,
    'spec.serviceAccountName': (pod['spec'] as Json)['serviceAccountName'] ?? 'default',
    'spec.nodeName': NODE_NAME,
    'status.podIP': ip,
    'status.hostIP': NODE_ADDRESS,
  };
  return fields[path];
}

/** The container's environment in order, later values expanding earlier ones, as the kubelet does. */
function containerEnv(pod: KubeObject, ip: string, container: Json): Map<string, string> {
  const env = new Map<string, string>();
  for (const entry of (container['env'] ?? []) as Json[]) {
    const fieldPath = entry['valueFrom']?.['fieldRef']?.['fieldPath'] as string | undefined;
    const value =
      fieldPath !== undefined
        ? fieldValue(pod, ip, fieldPath)
        : expandVariables(String(entry['value'] ?? ''), env);
    if (value === undefined) throw new Error(`pod-runner: unsupported fieldRef ${fieldPath}`);
    env.set(entry['name'] as string, value);
  }
  return env;
}

/** Writes the pod's volumes under `dir`; returns each volume's folder by name. */
async function writeVolumes(
  pod: KubeObject,
  dir: string,
  tokens: ServiceAccountTokens,
): Promise<Map<string, string>> {
  const folders = new Map<string, string>();
  const spec = pod['spec'] as Json;
  for (const volume of (spec['volumes'] ?? []) as Json[]) {
    const folder = join(dir, 'volumes', volume['name'] as string);
    await mkdir(folder, { recursive: true, mode: 0o755 });
    for (const source of (volume['projected']?.['sources'] ?? []) as Json[]) {
      const request = source['serviceAccountToken'];
      if (request === undefined)
        throw new Error(`pod-runner: unsupported projected source ${Object.keys(source)}`);
      const token = tokens.issue(pod.metadata.namespace!, spec['serviceAccountName'] ?? 'default', [
        request['audience'],
      ]);
      await writeFile(join(folder, request['path'] as string), token, { mode: 0o644 });
    }
    if (volume['projected'] === undefined && volume['emptyDir'] === undefined)
      throw new Error(`pod-runner: unsupported volume ${JSON.stringify(volume)}`);
    // Any uid the containers run as may use it (the kubelet sets fsGroup or the owner instead).
    await chmod(folder, volume['emptyDir'] !== undefined ? 0o777 : 0o755);
    folders.set(volume['name'] as string, folder);
  }
  return folders;
}

/** `text` with each mount path of the container replaced by its volume's folder. */
function rewriteMounts(text: string, mounts: readonly (readonly [string, string])[]): string {
  let out = text;
  for (const [mountPath, folder] of mounts) out = out.split(mountPath).join(folder);
  return out;
}

/** The /etc files of the pod's processes: the cluster's Service names, and no other resolution. */
async function writeEtc(
  kube: FakeKubeServer,
  pod: KubeObject,
  ns: Netns,
  ip: string,
): Promise<() => Promise<void>> {
  const namespace = pod.metadata.namespace!;
  const lines = [`127.0.0.1 localhost`, `${ip} ${pod.metadata.name}`];
  for (const service of kube.list('Service')) {
    const clusterIP = (service['spec'] as Json | undefined)?.['clusterIP'] as string | undefined;
    if (clusterIP === undefined || clusterIP === 'None' || clusterIP === '') continue;
    const { name, namespace: serviceNamespace } = service.metadata;
    const names = [`${name}.${serviceNamespace}.svc.${CLUSTER_DOMAIN}`, `${name}.${serviceNamespace}.svc`];
    if (serviceNamespace === namespace) names.push(name);
    lines.push(`${clusterIP} ${names.join(' ')}`);
  }
  const etc = join('/etc/netns', ns.name);
  await mkdir(etc, { recursive: true });
  await writeFile(join(etc, 'hosts'), `${lines.join('\n')}\n`);
  // Nothing answers DNS on the pod's loopback: names not in hosts fail at once, never time out.
  await writeFile(
    join(etc, 'resolv.conf'),
    `nameserver 127.0.0.1\nsearch ${namespace}.svc.${CLUSTER_DOMAIN} svc.${CLUSTER_DOMAIN} ${CLUSTER_DOMAIN}\noptions timeout:1 attempts:1\n`,
  );
  return async () => {
    await rm(etc, { recursive: true, force: true });
    spawnSync('rmdir', ['/etc/netns'], { stdio: 'ignore' }); // only when no other test uses it
  };
}

/** The EndpointSlice controller: one slice per Service of `namespace`, from the pods it selects. */
export function syncEndpointSlices(kube: FakeKubeServer, namespace: string): void {
  const pods = kube.list('Pod').filter((p) => p.metadata.namespace === namespace);
  for (const service of kube.list('Service').filter((s) => s.metadata.namespace === namespace)) {
    const spec = service['spec'] as Json;
    const selector = (spec['selector'] ?? null) as Record<string, string> | null;
    if (selector === null) continue;
    const selected = pods.filter(
      (p) =>
        (p['status'] as Json | undefined)?.['podIP'] !== undefined &&
        Object.entries(selector).every(([k, v]) => p.metadata.labels?.[k] === v),
    );
    const containerPort = (pod: KubeObject, target: unknown): number | undefined =>
      typeof target === 'number'
        ? target
        : ((pod['spec'] as Json)['containers'] as Json[])
            .flatMap((c) => (c['ports'] ?? []) as Json[])
            .find((p) => p['name'] === target)?.['containerPort'];
    kube.apply({
      apiVersion: 'discovery.k8s.io/v1',
      kind: 'EndpointSlice',
      metadata: {
        name: `${service.metadata.name}-runner`,
        namespace,
        labels: { 'kubernetes.io/service-name': service.metadata.name },
      },
      addressType: 'IPv4',
      endpoints: selected.map((pod) => ({
        addresses: [(pod['status'] as Json)['podIP']],
        conditions: { ready: isReady(pod) },
        targetRef: { kind: 'Pod', name: pod.metadata.name, namespace },
      })),
      ports: ((spec['ports'] ?? []) as Json[]).map((p) => ({
        name: p['name'] ?? '',
        protocol: p['protocol'] ?? 'TCP',
        port: (selected[0] && containerPort(selected[0], p['targetPort'] ?? p['port'])) ?? p['port'],
      })),
    });
  }
}

const isReady = (pod: KubeObject): boolean =>
  ((pod['status'] as Json | undefined)?.['conditions'] ?? []).some(
    (c: Json) => c['type'] === 'Ready' && c['status'] === 'True',
  );

/** Writes the pod's status, then the EndpointSlices of its namespace. */
function publishStatus(kube: FakeKubeServer, pod: KubeObject, status: Json): void {
  const stored = kube.get('Pod', pod.metadata.namespace, pod.metadata.name) ?? pod;
  kube.apply({ ...stored, status });
  syncEndpointSlices(kube, pod.metadata.namespace!);
}

/** Runs `pod` until the test ends; resolves once every container started and passed its probes. */
export async function runPod(
  t: TestContext,
  pod: KubeObject,
  options: PodRunnerOptions,
): Promise<RunningPod> {
  const { kube, network, tokens } = options;
  const spec = pod['spec'] as Json;
  const { ns, ip } = network.addPod(pod.metadata.name.slice(0, 8));
  const dir = await mkdtemp(join(tmpdir(), 'trellis-pod-'));
  await chmod(dir, 0o755);
  const removeEtc = await writeEtc(kube, pod, ns, ip);
  const running = new Map<string, RunningContainer>();
  t.after(async () => {
    // Main containers first, then the sidecars, as the kubelet stops a pod.
    for (const container of [...running.values()].reverse()) await stopChild(container.proc);
    await removeEtc();
    await rm(dir, { recursive: true, force: true });
  });
  const volumes = await writeVolumes(pod, dir, tokens);
  const base = { podIP: ip, podIPs: [{ ip }], hostIP: NODE_ADDRESS, startTime: new Date().toISOString() };
  publishStatus(kube, pod, { ...base, phase: 'Pending' });
  const logs = () =>
    [...running.entries()]
      .map(([name, c]) => `--- ${name} stdout:\n${c.stdout()}\n--- ${name} stderr:\n${c.stderr()}`)
      .join('\n');

  const start = (container: Json): RunningContainer => {
    const env = containerEnv(pod, ip, container);
    const mounts = ((container['volumeMounts'] ?? []) as Json[]).map(
      (m) => [m['mountPath'] as string, volumes.get(m['name'] as string)!] as const,
    );
    const expand = (s: string) => rewriteMounts(expandVariables(s, env), mounts);
    const given = options.commands?.[container['name'] as string];
    const argv =
      given !== undefined
        ? [...given]
        : [
            NODE,
            CLI,
            ...((container['command'] ?? []) as string[]),
            ...((container['args'] ?? []) as string[]),
          ];
    const uid = container['securityContext']?.['runAsUser'] ?? spec['securityContext']?.['runAsUser'] ?? 0;
    const gid = container['securityContext']?.['runAsGroup'] ?? spec['securityContext']?.['runAsGroup'] ?? 0;
    const user = uid === 0 ? [] : ['setpriv', `--reuid=${uid}`, `--regid=${gid}`, '--clear-groups'];
    const processEnv = Object.fromEntries([...env].map(([k, v]) => [k, expand(v)]));
    const proc = ns.spawn([...user, ...argv.map(expand)], {
      cwd: REPO,
      env: { PATH: process.env['PATH'] ?? '/usr/bin:/bin', HOME: '/', ...processEnv },
    });
    let stdout = '';
    let stderr = '';
    proc.stdout!.setEncoding('utf8').on('data', (d: string) => (stdout = (stdout + d).slice(-LOG_LIMIT)));
    proc.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr = (stderr + d).slice(-LOG_LIMIT)));
    const exited = once(proc, 'exit').then(([code]) => code as number | null);
    const started = { proc, exited, stdout: () => stdout, stderr: () => stderr };
    running.set(container['name'] as string, started);
    return started;
  };

  /** Polls an httpGet probe from the node until it passes (throws at the deadline or when the container exits). */
  const probe = async (container: Json, which: 'startupProbe' | 'readinessProbe'): Promise<void> => {
    const check = container[which]?.['httpGet'] as Json | undefined;
    if (check === undefined) return;
    const port =
      typeof check['port'] === 'number'
        ? check['port']
        : ((container['ports'] ?? []) as Json[]).find((p) => p['name'] === check['port'])?.['containerPort'];
    const period = Math.min(1000, (container[which]['periodSeconds'] ?? 10) * 1000);
    const deadline = Date.now() + PROBE_DEADLINE_MS;
    const proc = running.get(container['name'] as string)!.proc;
    for (;;) {
      const answer = await network
        .get(ip, port as number, check['path'] ?? '/')
        .catch((error: Error) => ({ status: 0, body: error.message }));
      if (answer.status >= 200 && answer.status < 400) return;
      if (proc.exitCode !== null || proc.signalCode !== null || Date.now() > deadline)
        throw new Error(
          `pod ${pod.metadata.name}: ${container['name']} failed its ${which} (last: ${answer.status} ${answer.body.trim()})\n${logs()}`,
        );
      await new Promise((resolve) => setTimeout(resolve, period));
    }
  };

  for (const container of (spec['initContainers'] ?? []) as Json[]) {
    const started = start(container);
    if (container['restartPolicy'] === 'Always') {
      await probe(container, 'startupProbe');
      continue;
    }
    const outcome = await Promise.race([
      started.exited.then((code) => (code === 0 ? null : `exited ${code}`)),
      new Promise<string>((resolve) =>
        setTimeout(() => resolve(`still runs after ${INIT_DEADLINE_MS} ms`), INIT_DEADLINE_MS).unref(),
      ),
    ]);
    if (outcome !== null)
      throw new Error(`pod ${pod.metadata.name}: init container ${container['name']} ${outcome}\n${logs()}`);
  }
  const containers = (spec['containers'] ?? []) as Json[];
  for (const container of containers) start(container);
  for (const container of containers) await probe(container, 'startupProbe');
  const sidecars = ((spec['initContainers'] ?? []) as Json[]).filter((c) => c['restartPolicy'] === 'Always');
  await Promise.all([...sidecars, ...containers].map((c) => probe(c, 'readinessProbe')));
  publishStatus(kube, pod, {
    ...base,
    phase: 'Running',
    conditions: [{ type: 'Ready', status: 'True', lastTransitionTime: new Date().toISOString() }],
  });
  return {
    ip,
    ns,
    container(name) {
      const found = running.get(name);
      if (found === undefined) throw new Error(`pod ${pod.metadata.name} has no container ${name}`);
      return found;
    },
    logs,
  };
}
