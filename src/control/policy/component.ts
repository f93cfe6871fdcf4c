// The policy part of the control plane (a ControlPlaneComponent of src/control/server.ts):
//
//   gRPC  trellis.policy.v1.Policy/WatchInbound   the full InboundPolicy of the asking workload at
//         once (after the source's first read), then again after every change that alters it;
//         a Server's named port resolves first through the names the proxy gives its own app port
//         (InboundRequest.named_ports: on one machine each instance has its own app port)
//   HTTP  GET /api/authz?namespace=NS&workload=NAME   the same policy as JSON, with the Servers
//         that select the workload but were skipped (unresolvable port name), for `trellis authz`;
//         `port` is a named port resolved as the control plane knows the workload (one machine:
//         the first instance's); `portName` says it was a name, and `instancePorts` gives the
//         number each instance's proxy resolves it to (one machine: each has its own app port)
//
// Each stream recomputes its workload's policy when the source reports a change and sends it only
// when it differs from what the stream sent last (the shared src/control/watch-streams.ts), so
// unrelated changes cost one comparison.
import type { IncomingMessage, ServerResponse } from 'node:http';
import * as grpc from '@grpc/grpc-js';
import type { KubeConfig } from '@kubernetes/client-node';
import { loadPolicyApi, type ApiInboundPolicy, type ApiInboundRequestOutput } from '../../api/load.ts';
import type { Logger } from '../../core/log.ts';
import type { ControlPlaneComponent } from '../server.ts';
import { isPort, isPortName } from '../../core/port.ts';
import { WatchStreams, withSharedEncoding } from '../watch-streams.ts';
import type { WatchLimits } from '../watch-limits.ts';
import { KubernetesPolicySource } from './kubernetes.ts';
import { LocalPolicySource } from './local.ts';
import { buildInboundPolicy, type SkippedServer } from './model.ts';
import type { PolicySource } from './source.ts';

/** A Server of GET /api/authz: what the proxy gets, and how its port was written. */
export type AuthzServer = NonNullable<ApiInboundPolicy['servers']>[number] & {
  /** The Server's port when it is a name (`port: http`); `port` is then one resolution of it. */
  readonly portName?: string;
  /** A named port per instance, where each has its own (one machine): what its proxy selects. */
  readonly instancePorts?: readonly { readonly instance: string; readonly port: number }[];
};

/** What GET /api/authz answers. */
export interface AuthzView {
  readonly namespace: string;
  readonly workload: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly servers: readonly AuthzServer[];
  readonly skipped: readonly SkippedServer[];
}

export interface PolicyComponent extends ControlPlaneComponent {
  readonly source: PolicySource;
  /** Open WatchInbound streams (tests check they are released). */
  readonly openStreams: number;
}

/** The policy component over the state folder `root` (`trellis up`). */
export function localPolicyComponent(root: string, log: Logger): PolicyComponent {
  return createPolicyComponent(new LocalPolicySource({ root, log }), log);
}

/** The policy component over the Kubernetes API (`trellis control`). */
export function kubernetesPolicyComponent(kubeConfig: KubeConfig, log: Logger): PolicyComponent {
  return createPolicyComponent(new KubernetesPolicySource({ kubeConfig, log }), log);
}

type WatchCall = grpc.ServerWritableStream<ApiInboundRequestOutput, ApiInboundPolicy>;

const NO_PORTS: ReadonlyMap<string, number> = new Map();

/** The most names a proxy may give its app port (each is kept for as long as its watch is open). */
export const MAX_NAMED_PORTS = 32;

/** What is wrong with an InboundRequest's named_ports, or null. */
export function namedPortsProblem(ports: Readonly<Record<string, number>>): string | null {
  const entries = Object.entries(ports);
  if (entries.length > MAX_NAMED_PORTS) return `named_ports: at most ${MAX_NAMED_PORTS} names`;
  for (const [name, port] of entries) {
    if (!isPortName(name)) return `named_ports: ${JSON.stringify(name.slice(0, 64))} is not a port name`;
    if (!isPort(port)) return `named_ports: ${name}: ${port} is not a port`;
  }
  return null;
}

export function createPolicyComponent(source: PolicySource, parentLog: Logger): PolicyComponent {
  const log = parentLog.child({ component: 'policy-api' });
  const streams = new WatchStreams<ApiInboundPolicy>(source, log, 'policy');
  let closed = false;

  const inbound = (
    namespace: string,
    workload: string,
    labels: Readonly<Record<string, string>>,
    ownPorts: ReadonlyMap<string, number>,
  ) => {
    const known = source.workload(namespace, workload, labels);
    // The asking proxy's names of its own app port come first (see InboundRequest.named_ports).
    const facts =
      ownPorts.size === 0 ? known : { ...known, namedPorts: new Map([...known.namedPorts, ...ownPorts]) };
    return { facts, ...buildInboundPolicy(source.snapshot(), facts) };
  };

  /** GET /api/authz: the workload's policy, with each named port as written and per instance. */
  const view = (namespace: string, workload: string): AuthzView => {
    const { facts, policy, skipped } = inbound(namespace, workload, {}, NO_PORTS);
    const snapshot = source.snapshot();
    const instances = source.instances?.(namespace, workload) ?? [];
    const servers = (policy.servers ?? []).map((server): AuthzServer => {
      const portName = snapshot.servers.find((s) => `${s.namespace}/${s.name}` === server.name)?.spec.port;
      if (typeof portName !== 'string') return server;
      // What each instance's proxy resolves the name to: its own names first, as in watchInbound.
      const instancePorts = instances.flatMap(({ instance, namedPorts }) => {
        const port = namedPorts.get(portName) ?? facts.namedPorts.get(portName);
        return port === undefined ? [] : [{ instance, port }];
      });
      return { ...server, portName, ...(instancePorts.length === 0 ? {} : { instancePorts }) };
    });
    return { namespace, workload, labels: facts.labels, servers, skipped };
  };

  const watchInbound = (call: WatchCall): void => {
    const { namespace, workload } = call.request;
    const labels = { ...call.request.labels };
    const invalid =
      namespace === '' || workload === ''
        ? 'InboundRequest needs a namespace and a workload'
        : namedPortsProblem(call.request.namedPorts);
    if (invalid !== null) {
      call.emit('error', { code: grpc.status.INVALID_ARGUMENT, details: invalid });
      return;
    }
    const ownPorts = new Map(Object.entries(call.request.namedPorts));
    let lastSkipped = '';
    // Every stream of one workload (labels and named ports alike) gets the same policy: built once
    // a change for all of them, as Routes.Watch (watch-streams.ts).
    const byName = (a: [string, unknown], b: [string, unknown]) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0);
    const shareKey = JSON.stringify([
      namespace,
      workload,
      Object.entries(labels).sort(byName),
      [...ownPorts.entries()].sort(byName),
    ]);
    streams.serve(
      call,
      () => {
        const { policy, skipped } = inbound(namespace, workload, labels, ownPorts);
        const skippedKey = JSON.stringify(skipped);
        if (skipped.length > 0 && skippedKey !== lastSkipped) {
          log.warn('servers skipped for a workload', { namespace, workload, skipped });
        }
        lastSkipped = skippedKey;
        return { servers: policy.servers ?? [] };
      },
      shareKey,
    );
  };

  return {
    source,
    get openStreams() {
      return streams.size;
    },
    addGrpcServices(server: grpc.Server, limits?: WatchLimits) {
      if (limits !== undefined) streams.limitBy(limits);
      server.addService(withSharedEncoding(loadPolicyApi().Policy.service), { WatchInbound: watchInbound });
    },
    async handleHttp(req: IncomingMessage, res: ServerResponse, path: string): Promise<boolean> {
      if (path !== '/api/authz') return false;
      const send = (status: number, body: unknown): void => {
        res.writeHead(status, { 'content-type': 'application/json' });
        res.end(JSON.stringify(body) + '\n');
      };
      if (req.method !== 'GET' && req.method !== 'HEAD') {
        res.setHeader('allow', 'GET, HEAD');
        send(405, { error: 'method not allowed' });
        return true;
      }
      const query = new URL(req.url ?? '/', 'http://control').searchParams;
      const namespace = query.get('namespace') || 'default';
      const workload = query.get('workload') ?? '';
      if (workload === '') {
        send(400, { error: 'workload: required (?workload=NAME)' });
        return true;
      }
      await source.ready();
      send(200, view(namespace, workload));
      return true;
    },
    async close() {
      if (closed) return;
      closed = true;
      streams.closeAll();
      await source.close();
    },
  };
}
