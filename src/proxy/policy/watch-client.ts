// One Policy.WatchInbound stream for this proxy's workload, kept open: each message replaces the
// policy; when the stream fails or ends the watch starts again after an exponential backoff with
// jitter (the caller keeps the last policy meanwhile, so a control-plane restart changes nothing
// for traffic). Loaded lazily by authorizer.ts, so a proxy without a policy address never loads
// gRPC.
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

export interface PolicyWatchOptions {
  /** The control plane's gRPC address, "host:port". */
  readonly address: string;
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
  const client: PolicyClient = new Policy(
    options.address,
    grpc.credentials.createInsecure(),
    reconnectBackoffOptions(backoff),
  );
  let call: grpc.ClientReadableStream<ApiInboundPolicyOutput> | null = null;
  let retry: TimerHandle | null = null;
  let failures = 0;
  let closed = false;

  const start = (): void => {
    retry = null;
    const current = client.WatchInbound({
      namespace: options.namespace,
      workload: options.workload,
      labels: { ...options.labels },
    });
    call = current;
    current.on('data', (message: ApiInboundPolicyOutput) => {
      if (closed || call !== current) return;
      if (failures > 0) log.info('policy watch restored', { address: options.address });
      failures = 0;
      options.onPolicy(message);
    });
    // Non-OK statuses arrive both as 'error' and as 'status'; 'status' alone decides.
    current.on('error', () => {});
    current.on('status', (status: grpc.StatusObject) => {
      if (closed || call !== current) return;
      call = null;
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
          address: options.address,
          reason,
          delayMs: Math.round(delay),
        },
      );
      failures++;
      retry = timers.setTimeout(start, delay);
    });
  };
  start();

  return {
    close() {
      if (closed) return;
      closed = true;
      retry?.cancel();
      retry = null;
      call?.cancel();
      call = null;
      client.close();
    },
  };
}
