// The server side of the control plane's watch APIs (Policy.WatchInbound, Routes.Watch): each
// stream gets its message once the source's first read is done, then again after every change of
// the source that alters it (a message equal to the last one sent is not sent again, so unrelated
// changes cost one comparison). A stream is released when the client cancels or it fails; when
// the control plane closes, every open stream ends with UNAVAILABLE and the proxies, which keep
// what they had, watch again (maybe a restarted control plane). A stream holds at most the message
// being written: a reader that does not keep up gets the newest snapshot once it took the last.
import { createHash } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import type { Logger } from '../core/log.ts';
import type { StreamLimit, WatchLimits } from './watch-limits.ts';

/** What a watch follows: a source that says when it is ready and when it changed. */
export interface WatchedSource {
  ready(): Promise<void>;
  onChange(listener: () => void): () => void;
}

/** The open streams of one watch API. */
export class WatchStreams<Message> {
  readonly #streams = new Set<grpc.ServerWritableStream<unknown, Message>>();
  readonly #source: WatchedSource;
  readonly #log: Logger;
  /** What is served, in messages ("policy", "route"). */
  readonly #what: string;
  #limit: StreamLimit | null = null;
  /** Every open stream's send, called in one pass per change of the source (after #built is cleared). */
  readonly #senders = new Set<() => void>();
  /** The source tells this object of its changes (from the first stream's subscription on). */
  #subscribed = false;
  /**
   * Messages built since the last change, by the share key of the streams that asked for them,
   * while such a stream is open: 10,000 streams of one target build, serialize to JSON and digest
   * one message a change, not 10,000 (a 1 MB route set cost ~15 ms a stream, so a change of it
   * held the event loop for minutes).
   */
  readonly #built = new Map<
    string,
    { streams: number; message: { value: Message; digest: string } | null }
  >();

  constructor(source: WatchedSource, log: Logger, what: string) {
    this.#source = source;
    this.#log = log;
    this.#what = what;
  }

  get size(): number {
    return this.#streams.size;
  }

  /** Bounds the open streams by the control plane's limit for this API (named by `what`). */
  limitBy(limits: WatchLimits): void {
    this.#limit = limits.of(this.#what);
  }

  /** Calls `send` on every change of the source, after the messages built before it are forgotten. */
  #subscribe(send: () => void): () => void {
    if (!this.#subscribed) {
      this.#subscribed = true;
      this.#source.onChange(() => {
        for (const entry of this.#built.values()) entry.message = null;
        for (const each of Array.from(this.#senders)) {
          try {
            each();
          } catch (error) {
            this.#log.error(`a ${this.#what} watch failed to send`, { error });
          }
        }
      });
    }
    this.#senders.add(send);
    return () => this.#senders.delete(send);
  }

  /** The message for `shareKey` (built by `build` once a change), or built for one stream. */
  #message(build: () => Message, shareKey: string | undefined): { value: Message; digest: string } {
    const entry = shareKey === undefined ? undefined : this.#built.get(shareKey);
    if (entry?.message != null) return entry.message;
    const value = build();
    // A digest, not the text: a route set may be megabytes, and each of up to 10,000 streams
    // kept its own copy of the last one (1 MB a stream: 10 GB).
    const message = { value, digest: createHash('sha256').update(JSON.stringify(value)).digest('base64') };
    if (entry !== undefined) entry.message = message;
    return message;
  }

  /**
   * Serves `call`: `build()` is its message, recomputed on every change of the source. Streams
   * with the same `shareKey` get the same message: it is built once a change for all of them.
   */
  serve(call: grpc.ServerWritableStream<unknown, Message>, build: () => Message, shareKey?: string): void {
    const streams = this.#streams;
    let release: (() => void) | null = null;
    if (this.#limit !== null) {
      release = this.#limit.admit(call, (status) => {
        end();
        if (!call.cancelled) call.emit('error', status);
      });
      if (release === null) return;
    }
    streams.add(call);
    if (shareKey !== undefined) {
      const entry = this.#built.get(shareKey);
      if (entry === undefined) this.#built.set(shareKey, { streams: 1, message: null });
      else entry.streams++;
    }
    let lastSent = '';
    let unsubscribe: () => void = () => {};
    // Each message is a whole snapshot, so a stream holds one at most: while one is being written
    // (grpc-js calls back once HTTP/2 flow control let it out), a change only marks the stream
    // stale, and the newest snapshot goes once the reader took the last. Writing every change
    // queued them all for a reader that does not read: anyone who reaches the gRPC port could
    // open watches, never read, and have the control plane keep each change for each stream.
    let writing = false;
    let stale = false;
    const send = (): void => {
      if (!streams.has(call)) return;
      if (writing) {
        stale = true;
        return;
      }
      stale = false;
      const message = this.#message(build, shareKey);
      if (message.digest === lastSent) return;
      lastSent = message.digest;
      writing = true;
      call.write(message.value, () => {
        writing = false;
        if (stale) send();
      });
    };
    let ended = false;
    const end = (): void => {
      if (ended) return;
      ended = true;
      streams.delete(call);
      release?.();
      unsubscribe();
      if (shareKey !== undefined) {
        const entry = this.#built.get(shareKey);
        if (entry !== undefined && --entry.streams === 0) this.#built.delete(shareKey);
      }
    };
    call.on('cancelled', end);
    call.on('close', end);
    call.on('error', end);
    this.#source.ready().then(
      () => {
        if (!streams.has(call)) return;
        unsubscribe = this.#subscribe(send);
        send();
      },
      (error: unknown) => {
        this.#log.error(`${this.#what} source failed to start`, { error });
        end();
        call.emit('error', {
          code: grpc.status.UNAVAILABLE,
          details: `the ${this.#what} source is unavailable`,
        });
      },
    );
  }

  /** Ends every open stream with UNAVAILABLE (the control plane is closing). */
  closeAll(): void {
    for (const call of Array.from(this.#streams)) {
      this.#streams.delete(call);
      if (!call.cancelled)
        call.emit('error', {
          code: grpc.status.UNAVAILABLE,
          details: `the ${this.#what} service is shutting down`,
        });
    }
  }
}

/**
 * `service` with each streamed response encoded once per message object. Streams that share a
 * message (serve's shareKey) write the same object, and grpc-js encodes what it is given for each
 * stream: 10,000 watches of a 1 MB route set encoded it 10,000 times a change (about 40 s of a
 * blocked event loop). grpc-js copies the bytes into each stream's frame and keeps nothing, and
 * the encoders do not change the message, so the cached bytes stand for it while it lives.
 */
export function withSharedEncoding<S extends grpc.ServiceDefinition>(service: S): S {
  const shared: Record<string, grpc.MethodDefinition<unknown, unknown>> = {};
  for (const [name, method] of Object.entries(service) as [
    string,
    grpc.MethodDefinition<unknown, unknown>,
  ][]) {
    if (!method.responseStream) {
      shared[name] = method;
      continue;
    }
    const encoded = new WeakMap<object, Buffer>();
    const encode = method.responseSerialize;
    shared[name] = {
      ...method,
      responseSerialize: (message: unknown): Buffer => {
        if (typeof message !== 'object' || message === null) return encode(message);
        let bytes = encoded.get(message);
        if (bytes === undefined) {
          bytes = encode(message);
          encoded.set(message, bytes);
        }
        return bytes;
      },
    };
  }
  return shared as S;
}
