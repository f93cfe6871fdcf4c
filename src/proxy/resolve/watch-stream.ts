// One gRPC watch of the control plane kept open, the one way the proxy does it (Destination.Watch
// per resolution, Policy.WatchInbound): a server stream whose messages go to a callback; when it
// fails or ends, it is opened again after the shared backoff (control-plane-retry.ts), at the
// address the locator names (control-plane-address.ts); when the control plane restarted or moved
// it is opened again at once, there. The owner keeps what the last messages said meanwhile.
//
// One logging policy for every watch: the first failure is a warning (what the watch feeds is now
// frozen), repeats are debug lines, and the first message after failures says it recovered.
//
// Loaded only with the clients that use it, which the proxy loads lazily (a proxy that never
// names a service never loads gRPC).
import * as grpc from '@grpc/grpc-js';
import type { BackoffSettings } from '../../core/backoff.ts';
import type { Timers } from '../../core/clock.ts';
import type { LogFields, Logger } from '../../core/log.ts';
import type { Random } from '../../core/random.ts';
import type { ControlPlaneLocator } from './control-plane-address.ts';
import { ControlPlaneRetry } from './control-plane-retry.ts';

/** What the loop needs of a server stream (a grpc.ClientReadableStream has it). */
export interface ServerStream<M> {
  on(event: 'data', listener: (message: M) => void): unknown;
  on(event: 'error', listener: (error: Error) => void): unknown;
  on(event: 'status', listener: (status: grpc.StatusObject) => void): unknown;
  cancel(): void;
}

/** How a stream ended, for the owner. */
export interface WatchEnd {
  /** "the stream ended", or the status's name and details. */
  readonly reason: string;
  readonly status: grpc.StatusObject;
  /** When the stream is opened again. */
  readonly delayMs: number;
}

export interface WatchStreamOptions<M> {
  /** What is watched, in log lines ("policy watch"). */
  readonly name: string;
  /** Where the control plane is, and the address last called (a ControlPlaneClient has both). */
  readonly client: { readonly locator: ControlPlaneLocator; readonly address: string };
  /** Opens the stream (at the locator's current address). */
  readonly open: () => ServerStream<M>;
  readonly onMessage: (message: M) => void;
  /** The stream failed or ended; it is opened again after `delayMs` unless the watch is closed. */
  readonly onEnd?: (end: WatchEnd) => void;
  /** What the owner keeps meanwhile, for the failure's log line ("the last policy"). */
  readonly keeps?: string;
  /** Added to every log line (the target watched). */
  readonly fields?: LogFields;
  readonly backoff: BackoffSettings;
  readonly timers?: Timers;
  readonly random?: Random;
  readonly log: Logger;
}

export interface WatchStream {
  /** Cancels the stream and any pending retry. Idempotent. */
  close(): void;
}

/** Opens the stream now and keeps it open until close(); see the file comment. */
export function watchStream<M>(options: WatchStreamOptions<M>): WatchStream {
  const { name, client, log } = options;
  const ended = `${name} ended; ${options.keeps === undefined ? '' : `keeping ${options.keeps} and `}retrying`;
  let call: ServerStream<M> | null = null;
  let closed = false;

  const start = (): void => {
    const current = options.open();
    call = current;
    current.on('data', (message: M) => {
      if (closed || call !== current) return;
      if (retry.succeeded()) log.info(`${name} restored`, { ...options.fields, address: client.address });
      options.onMessage(message);
    });
    // Non-OK statuses arrive both as 'error' and as 'status'; 'status' alone decides.
    current.on('error', () => {});
    current.on('status', (status: grpc.StatusObject) => {
      if (closed || call !== current) return;
      call = null;
      const first = retry.failures === 0;
      const delayMs = retry.failed(status.code !== grpc.status.OK);
      const reason =
        status.code === grpc.status.OK
          ? 'the stream ended'
          : `${grpc.status[status.code]}: ${status.details}`;
      // The first failure is worth a warning (what the watch feeds is now frozen); repeats only at debug.
      (first ? log.warn : log.debug).call(log, ended, {
        ...options.fields,
        address: client.address,
        reason,
        delayMs: Math.round(delayMs),
      });
      options.onEnd?.({ reason, status, delayMs });
    });
  };

  const retry = new ControlPlaneRetry({
    locator: client.locator,
    backoff: options.backoff,
    run: start,
    // The control plane restarted or moved: watch again now, where it is.
    onMove: () => {
      log.debug(`${name}: the control plane moved; watching again`, {
        ...options.fields,
        address: client.locator.current(),
      });
      const previous = call;
      call = null; // its end is not a failure
      previous?.cancel();
      retry.reset();
      start();
    },
    timers: options.timers,
    random: options.random,
  });
  start();

  return {
    close() {
      if (closed) return;
      closed = true;
      retry.close();
      const previous = call;
      call = null;
      previous?.cancel();
    },
  };
}
