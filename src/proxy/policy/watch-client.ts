// One Policy.WatchInbound stream for this proxy's workload, kept open: each message replaces the
// policy; when the stream fails or ends the watch starts again after an exponential backoff with
// jitter (the caller keeps the last policy meanwhile, so a control-plane restart changes nothing
// for traffic). The stream goes to where the control plane is now (src/proxy/resolve/
// control-plane-address.ts): when it restarts or moves, the watch starts again at once. The loop,
// its backoff and its log lines are the shared watch-stream.ts. Loaded lazily by authorizer.ts, so
// a proxy without a policy address never loads gRPC.
import * as grpc from '@grpc/grpc-js';
import {
  Policy,
  reconnectBackoffOptions,
  type ApiInboundPolicyOutput,
  type PolicyClient,
} from '../../api/client.ts';
import { backoffSettings, WATCH_BACKOFF } from '../../core/backoff.ts';
import type { Timers } from '../../core/clock.ts';
import type { Logger } from '../../core/log.ts';
import type { Random } from '../../core/random.ts';
import { type ControlPlaneLocator, locateControlPlane } from '../resolve/control-plane-address.ts';
import { ControlPlaneClient } from '../resolve/control-plane-client.ts';
import { watchStream } from '../resolve/watch-stream.ts';

export interface PolicyWatchOptions {
  /** The control plane's gRPC address, "host:port". */
  readonly address: string;
  /** Where the control plane is now (default: the process's, see control-plane-address.ts). */
  readonly locator?: ControlPlaneLocator;
  readonly namespace: string;
  readonly workload: string;
  readonly labels?: Readonly<Record<string, string>>;
  readonly namedPorts?: Readonly<Record<string, number>>;
  /** Re-watch delays: from initialMs, doubling up to maxMs, each drawn in [delay/2, delay]. */
  readonly backoff?: { readonly initialMs?: number; readonly maxMs?: number };
  readonly timers?: Timers;
  readonly random?: Random;
  readonly log: Logger;
  readonly onPolicy: (policy: ApiInboundPolicyOutput) => void;
}

export interface PolicyWatch {
  close(): void;
}

export function watchInboundPolicy(options: PolicyWatchOptions): PolicyWatch {
  const backoff = backoffSettings(options.backoff, WATCH_BACKOFF);
  const client = new ControlPlaneClient<PolicyClient>(
    options.locator ?? locateControlPlane(options.address),
    (address) => new Policy(address, grpc.credentials.createInsecure(), reconnectBackoffOptions(backoff)),
  );
  const watch = watchStream<ApiInboundPolicyOutput>({
    name: 'policy watch',
    client,
    open: () =>
      client.get().WatchInbound({
        namespace: options.namespace,
        workload: options.workload,
        labels: { ...options.labels },
        namedPorts: { ...options.namedPorts },
      }),
    onMessage: options.onPolicy,
    keeps: 'the last policy',
    backoff,
    timers: options.timers,
    random: options.random,
    log: options.log,
  });
  return {
    close() {
      watch.close();
      client.close();
    },
  };
}
