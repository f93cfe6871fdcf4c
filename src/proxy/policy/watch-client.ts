// One Policy.WatchInbound stream for this proxy's workload, kept open: each message replaces the
// policy; when the stream fails or ends the watch starts again after an exponential backoff with
// jitter (the caller keeps the last policy meanwhile, so a control-plane restart changes nothing
// for traffic). The stream goes to where the control plane is now (src/proxy/resolve/
// control-plane-address.ts): when it restarts or moves, the watch starts again at once. Loaded
// lazily by authorizer.ts, so a proxy without a policy address never loads gRPC.
import * as grpc from '@grpc/grpc-js';
import {
  Policy,
  reconnectBackoffOptions,
  type ApiInboundPolicyOutput,
  type PolicyClient,
} from '../../api/client.ts';
import { backoffDelay, backoffSettings, WATCH_BACKOFF } from '../../core/backoff.ts';
import { systemTimers, type TimerHandle, type Timers } from '../../core/clock.ts';
import type { Logger } from '../../core/log.ts';
import { mathRandom, type Random } from '../../core/random.ts';
import { type ControlPlaneLocator, locateControlPlane } from '../resolve/control-plane-address.ts';
import { ControlPlaneClient } from '../resolve/control-plane-client.ts';

export interface PolicyWatchOptions {
  /** The control plane's gRPC address, "host:port". */
  readonly address: string;
  /** Where the control plane is now (default: the process's, see control-plane-address.ts). */
  readonly locator?: ControlPlaneLocator;
  readonly namespace: string;
  readonly workload: string;
  readonly labels?: Readonly<Record<string, string>>;
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
  const timers = options.timers ?? systemTimers;
  const random = options.random ?? mathRandom;
  const log = options.log;
  const client = new ControlPlaneClient<PolicyClient>(
    options.locator ?? locateControlPlane(options.address),
    (address) => new Policy(address, grpc.credentials.createInsecure(), reconnectBackoffOptions(backoff)),
  );
  let call: grpc.ClientReadableStream<ApiInboundPolicyOutput> | null = null;
  let retry: TimerHandle | null = null;
  let failures = 0;
  let closed = false;

  const start = (): void => {
    retry = null;
    const current = client.get().WatchInbound({
      namespace: options.namespace,
      workload: options.workload,
      labels: { ...options.labels },
    });
    call = current;
    current.on('data', (message: ApiInboundPolicyOutput) => {
      if (closed || call !== current) return;
      if (failures > 0) log.info('policy watch restored', { address: client.address });
      failures = 0;
      options.onPolicy(message);
    });
    // Non-OK statuses arrive both as 'error' and as 'status'; 'status' alone decides.
    current.on('error', () => {});
    current.on('status', (status: grpc.StatusObject) => {
      if (closed || call !== current) return;
      call = null;
      if (status.code !== grpc.status.OK) client.locator.refresh();
      const delay = backoffDelay(failures, backoff, random);
      const reason =
        status.code === grpc.status.OK
          ? 'the stream ended'
          : `${grpc.status[status.code]}: ${status.details}`;
      // The first failure is worth a warning (policy is now frozen); repeats only at debug.
      (failures === 0 ? log.warn : log.debug).call(
        log,
        'policy watch ended; keeping the last policy and retrying',
        {
          address: client.address,
          reason,
          delayMs: Math.round(delay),
        },
      );
      failures++;
      retry = timers.setTimeout(start, delay);
    });
  };
  start();
  // The control plane restarted or moved: watch again now, where it is.
  const stopFollowing = client.locator.onMove(() => {
    if (closed) return;
    const previous = call;
    call = null; // its end is not a failure
    previous?.cancel();
    retry?.cancel();
    failures = 0;
    start();
  });

  return {
    close() {
      if (closed) return;
      closed = true;
      stopFollowing();
      retry?.cancel();
      retry = null;
      call?.cancel();
      call = null;
      client.close();
    },
  };
}
