// The one-machine counterpart of the Gateway API's mesh conformance setup
// (conformance/mesh/manifests.yaml): in namespace gateway-conformance-mesh, Services `echo`,
// `echo-v1` and `echo-v2`, each with the ports 80 (targetPort http), 8080 (http-alt) and 7070
// (grpc), and two pods, echo-v1 and echo-v2 (mesh-echo.ts behind an in-process proxy each); `echo`
// selects both pods. The tests' client is a fresh client proxy per test (the conformance suite's
// client is the echo-v1 pod's sidecar): a new proxy's first request to a Service waits for the
// routes the control plane has then, so after `applyRoutes` every request sees exactly them.
import { deleteRouteFile, writeRouteFile } from '../../src/control/routes/state-files.ts';
import { writeServiceFile, writeWorkloadFile } from '../../src/control/discovery/local-state.ts';
import type { RouteResource } from '../../src/core/routes/schema.ts';
import { idOf, identityFor, startMeshWorld, type MeshWorld } from './mesh-pki.ts';
import type { WorkloadIdentity } from '../../src/proxy/identity/provider.ts';
import { parseAllDocuments } from 'yaml';
import { waitFor } from './cli.ts';
import assert from 'node:assert/strict';
import {
  echoOf,
  headerOf,
  proxiedRequest,
  startEchoApp,
  type EchoApp,
  type EchoRequest,
  type Reply,
} from './mesh-echo.ts';
import { portOf } from './running-proxy.ts';
import { routesFromYaml } from '../unit/routes-helpers.ts';

export const MESH_NS = 'gateway-conformance-mesh';
export const CONSUMER_NS = 'gateway-conformance-mesh-consumer';
/** The conformance suite's default gRPC method (its echo service). */
export const GRPC_PATH = '/proto.EchoTestService/Echo';

export interface ConformanceClient {
  /** The outbound listener: an HTTP proxy for HTTP/1 requests to `http://SERVICE[:PORT]/...`. */
  readonly outbound: number;
  /** The listeners bound for one Service port each (`bound` of client()), in that order. */
  readonly bound: readonly number[];
}

/** A listener bound for a Service port, as an app's connection to its address would be. */
export interface BoundListener {
  /** "SERVICE:PORT" in gateway-conformance-mesh. */
  readonly target: string;
  readonly protocol: 'http1' | 'h2';
}

export interface ConformanceMesh {
  /** The in-process mesh; null when the workloads are `trellis run` processes (conformance-run.ts). */
  readonly world: MeshWorld | null;
  /** The pods' addresses as their endpoints ("pod IP:port"): the proxies' inbound listeners. */
  readonly pods: Readonly<Record<'echo-v1' | 'echo-v2', string>>;
  /** A new client proxy in `namespace` (default gateway-conformance-mesh). */
  client(opts?: { namespace?: string; bound?: readonly BoundListener[] }): Promise<ConformanceClient>;
  /** Writes the routes of `yaml` and has the control plane read them; returns their removal. */
  applyRoutes(yaml: string): Promise<() => Promise<void>>;
  /** Runs `body` with `yaml`'s routes applied, and removes them after. */
  withRoutes(yaml: string, body: () => Promise<void>): Promise<void>;
  close(): Promise<void>;
}

const SERVICE_PORTS = {
  ports: [
    { name: 'http', port: 80, targetPort: 'http' },
    { name: 'http-alt', port: 8080, targetPort: 'http' },
    { name: 'grpc', port: 7070, targetPort: 'http' },
  ],
};

/** The three Services as the suite's manifests have them, as YAML for `trellis apply` or `kubectl`. */
export function servicesYaml(namespace: string): string {
  const ports = SERVICE_PORTS.ports.map(
    (p) => `    - { name: ${p.name}, port: ${p.port}, targetPort: ${p.targetPort} }\n`,
  );
  return ['echo', 'echo-v1', 'echo-v2']
    .map(
      (name) =>
        `apiVersion: v1\nkind: Service\nmetadata: { name: ${name}, namespace: ${namespace} }\nspec:\n  ports:\n${ports.join('')}`,
    )
    .join('---\n');
}

export async function startConformanceMesh(): Promise<ConformanceMesh> {
  const workloads = process.env['TRELLIS_CONFORMANCE_WORKLOADS'];
  if (workloads === 'run' || workloads === 'kubernetes') {
    const mesh =
      workloads === 'run'
        ? await (await import('./conformance-run.ts')).startConformanceRunMesh(MESH_NS)
        : await (await import('./conformance-kube.ts')).startConformanceKubeMesh(MESH_NS);
    try {
      await untilServed(mesh);
    } catch (error) {
      await mesh.close();
      throw error;
    }
    return mesh;
  }
  const world = await startMeshWorld();
  const apps: EchoApp[] = [];
  try {
    const pods: Record<string, string> = {};
    for (const service of ['echo', 'echo-v1', 'echo-v2'])
      await writeServiceFile(world.root, MESH_NS, service, SERVICE_PORTS);
    for (const pod of ['echo-v1', 'echo-v2'] as const) {
      const app = await startEchoApp(pod, MESH_NS);
      apps.push(app);
      const proxy = await world.proxy({
        identity: await identityFor(world, pod),
        app: app.port,
        config: { workload: { name: pod, namespace: MESH_NS } },
      });
      const inbound = portOf(proxy, 'inbound');
      pods[pod] = `127.0.0.1:${inbound}`;
      const registration = {
        address: '127.0.0.1',
        ports: [{ name: 'http', port: inbound }],
        meshed: true,
        identity: idOf(pod),
      };
      await writeWorkloadFile(world.root, MESH_NS, pod, { service: pod, ...registration });
      await writeWorkloadFile(world.root, MESH_NS, `${pod}-echo`, { service: 'echo', ...registration });
    }
    let clients = 0;
    const mesh = conformanceMesh({
      world,
      pods: pods as ConformanceMesh['pods'],
      client: async (opts = {}) =>
        inProcessClient(world, await identityFor(world, 'echo-v1'), `client-${++clients}`, opts),
      async applyRoutes(yaml) {
        const routes: RouteResource[] = routesFromYaml(yaml, Date.now());
        for (const route of routes) await writeRouteFile(world.root, route);
        await world.rescanRoutes();
        return async () => {
          for (const route of routes) await deleteRouteFile(world.root, route);
          await world.rescanRoutes();
        };
      },
      async close() {
        await world.close();
        for (const app of apps) app.close();
      },
    });
    await untilServed(mesh);
    return mesh;
  } catch (error) {
    await world.close();
    for (const app of apps) app.close();
    throw error;
  }
}

/** A ConformanceMesh of a setup's parts; withRoutes runs its body between applyRoutes and the removal. */
export function conformanceMesh(parts: Omit<ConformanceMesh, 'withRoutes'>): ConformanceMesh {
  return {
    ...parts,
    async withRoutes(yaml, body) {
      const remove = await parts.applyRoutes(yaml);
      try {
        await body();
      } finally {
        await remove();
      }
    },
  };
}

/**
 * A new in-process client proxy named `name` with `identity` (the suite's client is the echo-v1
 * pod's sidecar), in `opts.namespace` (default gateway-conformance-mesh), with a listener bound for
 * each of `opts.bound`; `discovery`: the control plane's gRPC address when not the world's own.
 */
export async function inProcessClient(
  world: MeshWorld,
  identity: WorkloadIdentity,
  name: string,
  opts: { namespace?: string; bound?: readonly BoundListener[] },
  discovery?: string,
): Promise<ConformanceClient> {
  const proxy = await world.proxy({
    identity,
    config: {
      ...(discovery === undefined ? {} : { discovery: { address: discovery, failFastMs: 3000 } }),
      workload: { name, namespace: opts.namespace ?? MESH_NS },
      destinations: (opts.bound ?? []).map((b) => ({
        listen: '127.0.0.1:0',
        target: b.target.replace(':', `.${MESH_NS}:`),
        protocol: b.protocol,
      })),
    },
  });
  return {
    outbound: portOf(proxy, 'outbound'),
    bound: (opts.bound ?? []).map((_, i) => portOf(proxy, `destination-${i}`)),
  };
}

/**
 * Until the control plane whose HTTP API is at `http` serves every route of `yaml` (GET
 * /api/routes), or, `present` false, none of them; the routes as [kind, namespace, name].
 */
export async function untilRoutesServed(
  http: string,
  yaml: string,
  present: boolean,
): Promise<[string, string, string][]> {
  const resources = parseAllDocuments(yaml)
    .map((d) => d.toJS() as { kind?: string; metadata?: { name?: string; namespace?: string } } | null)
    .filter((d) => d?.kind !== undefined)
    .map((r): [string, string, string] => [
      r!.kind!,
      r!.metadata?.namespace ?? 'default',
      r!.metadata?.name ?? '',
    ]);
  for (const [kind, namespace, name] of resources) {
    await waitFor(`${kind} ${namespace}/${name} ${present ? '' : 'no longer '}served`, async () => {
      const res = await fetch(`http://${http}/api/routes?kind=${kind}&namespace=${namespace}&name=${name}`);
      const list = (await res.json()) as unknown[];
      return list.length > 0 === present ? true : null;
    });
  }
  return resources;
}

/** Until discovery knows the three Services and both pods answer through them (at most 20 s). */
async function untilServed(mesh: ConformanceMesh): Promise<void> {
  const deadline = Date.now() + 20_000;
  for (const host of ['echo-v1', 'echo-v2', 'echo']) {
    for (;;) {
      const client = await mesh.client();
      const reply = await proxiedRequest(client.outbound, host, '/').catch(() => null);
      if (reply?.status === 200) break;
      if (Date.now() > deadline) throw new Error(`${host} is not served: ${reply?.status ?? 'no answer'}`);
      await new Promise((r) => setTimeout(r, 200));
    }
  }
}

/** The conformance suite's ExpectedResponse, as far as the mesh tests use it. */
export interface Expected {
  /** Default 200. */
  readonly status?: number;
  /** The pod that must have answered (in gateway-conformance-mesh). */
  readonly backend?: string;
  /** Response headers that must have these values, and ones that must be absent. */
  readonly headers?: Record<string, string>;
  readonly absentHeaders?: readonly string[];
  /** What the backend must have received: its path, request headers (values joined with ","), absent ones. */
  readonly request?: {
    readonly path?: string;
    readonly headers?: Record<string, string>;
    readonly absentHeaders?: readonly string[];
  };
}

/** Asserts the request headers an echo app received, as the suite compares them. */
export function checkEchoedRequest(
  echo: EchoRequest,
  want: NonNullable<Expected['request']>,
  what: string,
): void {
  if (want.path !== undefined) assert.equal(echo.path, want.path, `${what}: path received`);
  for (const [name, value] of Object.entries(want.headers ?? {}))
    assert.equal(headerOf(echo, name), value, `${what}: request header ${name}`);
  for (const name of want.absentHeaders ?? [])
    assert.equal(headerOf(echo, name), undefined, `${what}: request header ${name} absent`);
}

export function checkReply(reply: Reply, want: Expected, what: string): void {
  assert.equal(reply.status, want.status ?? 200, `${what}: status (${reply.body})`);
  for (const [name, value] of Object.entries(want.headers ?? {}))
    assert.equal(reply.headers[name.toLowerCase()], value, `${what}: response header ${name}`);
  for (const name of want.absentHeaders ?? [])
    assert.equal(reply.headers[name.toLowerCase()], undefined, `${what}: response header ${name} absent`);
  if (want.backend === undefined && want.request === undefined) return;
  const echo = echoOf(reply);
  assert.ok(echo !== null, `${what}: answered by an echo app`);
  if (want.backend !== undefined) {
    assert.equal(echo.pod, want.backend, `${what}: backend`);
    assert.equal(echo.namespace, MESH_NS, `${what}: backend namespace`);
  }
  if (want.request !== undefined) checkEchoedRequest(echo, want.request, what);
}

/** One case: a GET of `path` to `host` through the outbound listener `outbound`, checked against `want`. */
export async function expectCase(
  outbound: number,
  host: string,
  path: string,
  want: Expected,
  headers: Record<string, string> = {},
): Promise<void> {
  const what = `${host}${path} ${JSON.stringify(headers)}`;
  checkReply(await proxiedRequest(outbound, host, path, headers), want, what);
}

/** The suite's RedirectRequest: fields left out are not checked, except as setRedirectRequestDefaults does. */
export interface ExpectedRedirect {
  readonly status: number;
  readonly host?: string;
  /** Unset: 80 or none for http, 443 or none for https. */
  readonly port?: string;
  /** Unset: the request's (http). */
  readonly scheme?: string;
  /** Unset: the request's path. */
  readonly path?: string;
}

/** A GET of `path` to `host` that the route must answer with a redirect, checked as the suite's http.go does. */
export async function expectRedirect(
  outbound: number,
  host: string,
  path: string,
  want: ExpectedRedirect,
): Promise<void> {
  const what = `${host}${path}`;
  const reply = await proxiedRequest(outbound, host, path);
  assert.equal(reply.status, want.status, `${what}: status (${reply.body})`);
  assert.equal(echoOf(reply), null, `${what}: answered by the proxy, not an app`);
  const location = reply.headers.location;
  assert.ok(location !== undefined, `${what}: a Location`);
  const url = new URL(location);
  const scheme = url.protocol.slice(0, -1);
  if (want.host !== undefined) assert.equal(url.hostname, want.host, `${what}: host of ${location}`);
  if (want.port !== undefined) assert.equal(url.port, want.port, `${what}: port of ${location}`);
  else if (scheme === 'http' || scheme === 'https')
    assert.ok(url.port === '', `${what}: no port but the scheme's in ${location}`);
  assert.equal(scheme, want.scheme ?? 'http', `${what}: scheme of ${location}`);
  assert.equal(url.pathname, want.path ?? path, `${what}: path of ${location}`);
}

/** The suite's weight check: only the weighted backends answer, each within 5 points of its share. */
export function withinTolerance(
  seen: Map<string, number>,
  weights: Record<string, number>,
  total: number,
): string[] {
  const problems: string[] = [];
  for (const pod of seen.keys()) if (!(pod in weights)) problems.push(`unexpected backend ${pod}`);
  for (const [pod, share] of Object.entries(weights)) {
    const got = (seen.get(pod) ?? 0) / total;
    if (Math.abs(got - share) > 0.05) problems.push(`${pod}: ${got} not within 0.05 of ${share}`);
  }
  return problems;
}
