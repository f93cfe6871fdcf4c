// What a generator knows about the lane it writes for: the randomness of its batch, which
// listener it is, which authorities its requests may name (the guard's allowlist: the app, the
// bystander canary and the mesh service, never anything else on this machine), whether requests
// there are HTTP proxy requests, and which real identities it may impersonate.
import type { ListenerName } from './plan.ts';
import type { Rng } from './rng.ts';

export interface Ports {
  readonly app: number;
  /** The canary "anything else": no inbound listener may ever forward to it. */
  readonly bystander: number;
  /** The server-side proxy's inbound port (the mesh transport header names it). */
  readonly serverInbound: number;
}

export interface GenContext {
  readonly rng: Rng;
  readonly batch: number;
  readonly listener: ListenerName;
  readonly ports: Ports;
  /** host:port authorities a request may name; the first is the natural one for the lane. */
  readonly authorities: readonly string[];
  /** An HTTP proxy listener (outbound): requests are absolute-form or CONNECT. */
  readonly proxyForm: boolean;
  /** Real identities that are not the lane's own: claiming one is an impersonation. */
  readonly impersonate: readonly string[];
  /** The admin listener: GET/HEAD of its paths only (it has POST /shutdown). */
  readonly admin: boolean;
}

/** The service name the client-side proxy resolves to the server (registered in discovery). */
export const MESH_SERVICE = 'server.default:8080';
