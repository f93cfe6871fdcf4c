// Reading the first bytes of an accepted connection until detectProtocol (detect.ts) can tell what
// it speaks, with a deadline. The caller decides what a deadline means: the outbound side treats a
// silent client as a server-first protocol, the inbound side (src/proxy/inbound/accept.ts) never
// lets a deadline skip mTLS termination, policy or header sanitising.
//
// Every outcome is reported once, after this module has removed its listeners from the socket, so
// the caller can hand the socket (and the bytes read, which are never lost) to any handler. The
// socket is left flowing: the caller attaches its own reader or pauses it in the same tick.
import type net from 'node:net';
import { type Detection, detectProtocol } from './detect.ts';
import { reportFault, type FaultScope } from '../fault.ts';

export type FirstBytes =
  /** detectProtocol gave a final answer for `buf`. */
  | {
      readonly kind: 'decided';
      readonly detection: Exclude<Detection, { kind: 'need-more' }>;
      readonly buf: Buffer;
    }
  /** The deadline passed; `buf` holds what arrived (null: nothing at all). */
  | { readonly kind: 'timeout'; readonly buf: Buffer | null }
  /** The client half-closed before a decision; `buf` holds what arrived. */
  | { readonly kind: 'ended'; readonly buf: Buffer | null }
  /** The connection was reset or destroyed before a decision. */
  | { readonly kind: 'closed' };

/**
 * Reads from `socket` (after `initial`, bytes already read) until the protocol is known, the
 * client half-closes or resets, or `waitMs` passes (0: no deadline), counted from now or, with
 * `fromFirstByte`, from the first byte (a client allowed to stay silent must still finish what it
 * starts). Returns a cancel function that removes the listeners without reporting. A throw from
 * `done` is reported to `faults` and closes the socket.
 */
export function readFirstBytes(
  faults: FaultScope,
  socket: net.Socket,
  initial: Buffer | null,
  waitMs: number,
  done: (outcome: FirstBytes) => void,
  fromFirstByte = false,
): () => void {
  let buf = initial !== null && initial.length > 0 ? initial : null;
  let timer: NodeJS.Timeout | null = null;
  const stop = (): void => {
    if (timer !== null) clearTimeout(timer);
    timer = null;
    socket.removeListener('data', onData);
    socket.removeListener('end', onEnd);
    socket.removeListener('close', onClose);
  };
  const report = (outcome: FirstBytes): void => {
    stop();
    // `done` hands the connection to its protocol's handler: what that throws is a fault of
    // ours (src/proxy/fault.ts), which closes this connection and nothing else.
    try {
      done(outcome);
    } catch (err) {
      reportFault(faults, 'protocol handler start', err);
      socket.destroy();
    }
  };
  const decide = (): boolean => {
    if (buf === null) return false;
    const detection = detectProtocol(buf);
    if (detection.kind === 'need-more') return false;
    report({ kind: 'decided', detection, buf });
    return true;
  };
  const onData = (chunk: Buffer): void => {
    const first = buf === null;
    buf = buf === null ? chunk : Buffer.concat([buf, chunk]);
    if (!decide() && first && fromFirstByte) startClock();
  };
  const startClock = (): void => {
    if (waitMs <= 0 || timer !== null) return;
    timer = setTimeout(() => {
      timer = null;
      report({ kind: 'timeout', buf });
    }, waitMs);
  };
  const onEnd = (): void => report({ kind: 'ended', buf });
  const onClose = (): void => report({ kind: 'closed' });
  if (decide()) return () => {};
  socket.on('data', onData);
  socket.on('end', onEnd);
  socket.on('close', onClose);
  if (socket.isPaused()) socket.resume();
  if (!fromFirstByte || buf !== null) startClock();
  return stop;
}
