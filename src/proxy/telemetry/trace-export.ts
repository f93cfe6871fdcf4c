// Sending finished spans to an OTLP collector, whatever the transport: in batches of at most
// maxBatchSpans, sent when a batch is full or batchDelayMs after its first span, as one
// ExportTraceServiceRequest (trace-otlp.ts) handed to a SpanTransport (OTLP/HTTP:
// trace-export-http.ts, OTLP/gRPC: trace-export-grpc.ts; which one: trace-endpoint.ts). A span is
// encoded into its batch's bytes when it is added, so the queue holds bytes, not objects that
// the garbage collector would have to copy until the export (trace-otlp.ts, SpanBatch).
//
// Nothing here ever waits on the data path: add() appends to a bounded queue (maxQueuedSpans) or,
// when it is full, drops the span and counts it; at most one export is in flight (bounded by
// exportTimeoutMs), so a dead or slow collector costs memory of at most maxQueuedSpans +
// maxBatchSpans spans and otherwise only dropped spans, counted (trellis_trace_spans_dropped_total)
// and logged once per episode. After a failed export the next one waits a backoff (250 ms doubling
// to 10 s, jittered; src/core/backoff.ts) while the queue keeps its bound: a collector that is down
// is not called back to back.
import { backoffDelay, type BackoffSettings } from '../../core/backoff.ts';
import type { Logger } from '../../core/log.ts';
import { mathRandom } from '../../core/random.ts';
import { BatchPrefix, SpanBatch, type OtlpResource } from './trace-otlp.ts';
import type { FinishedSpan } from './trace-span.ts';
import type { ProxyMetrics } from './metrics.ts';

/** One way to deliver an encoded ExportTraceServiceRequest. */
export interface SpanTransport {
  /** Sends `body`; resolves null once the collector accepted it, else why not. Never rejects. */
  send(body: Buffer, timeoutMs: number): Promise<string | Error | null>;
  /** Closes its connections. */
  close(): void;
  /**
   * The collector it sends to now, when that can change (trace-follow.ts): the logs name it rather
   * than SpanExporterOptions.collector.
   */
  readonly collector?: string;
}

/** The wait after failed exports: 250 ms doubling to 10 s. */
export const EXPORT_BACKOFF: BackoffSettings = { initialMs: 250, maxMs: 10_000 };

export interface SpanExporterOptions {
  /** The collector configured, for the logs (unless the transport names where it sends now). */
  readonly collector: string;
  readonly resource: OtlpResource;
  readonly maxQueuedSpans: number;
  readonly maxBatchSpans: number;
  readonly batchDelayMs: number;
  readonly exportTimeoutMs: number;
  readonly metrics: Pick<ProxyMetrics, 'traceSpansExported' | 'traceSpansDropped'>;
  readonly log: Logger;
  readonly backoff?: BackoffSettings;
}

/** Where finished spans go. */
export interface SpanSink {
  /**
   * Takes a finished span: encodes (or copies) it before returning and keeps no reference to it,
   * for the caller reuses the object and its attribute list for the next span (trace-tracer.ts).
   */
  add(span: FinishedSpan): void;
  close(): Promise<void>;
}

export class SpanExporter implements SpanSink {
  private readonly opts: SpanExporterOptions;
  private readonly transport: SpanTransport;
  private readonly backoff: BackoffSettings;
  /** The resource and scope every export starts with, encoded once. */
  private readonly prefix: BatchPrefix;
  /** What the last full batch took: a new batch starts with as much (no regrowth from 64 bytes). */
  private fullBatchBytes = 0;
  /** Batches waiting to be sent, each of at most maxBatchSpans spans; the last one fills. */
  private batches: SpanBatch[] = [];
  private queuedSpans = 0;
  private timer: NodeJS.Timeout | null = null;
  private inFlight: Promise<void> | null = null;
  /** Exports failed in a row (0: the last one went through). */
  private failures = 0;
  /** The timer is a backoff: a full batch waits for it too. */
  private backingOff = false;
  private dropping = false;
  private encodeFailed = false;
  private closed = false;

  constructor(opts: SpanExporterOptions, transport: SpanTransport) {
    this.opts = opts;
    this.transport = transport;
    this.backoff = opts.backoff ?? EXPORT_BACKOFF;
    this.prefix = new BatchPrefix(opts.resource);
  }

  /** Spans waiting to be sent (the bound is maxQueuedSpans). */
  get queued(): number {
    return this.queuedSpans;
  }

  add(span: FinishedSpan): void {
    if (this.closed || this.queuedSpans >= this.opts.maxQueuedSpans) {
      this.opts.metrics.traceSpansDropped('queue-full', 1);
      if (!this.dropping && !this.closed) {
        this.dropping = true;
        this.opts.log.warn('trace export queue is full; dropping spans', {
          maxQueuedSpans: this.opts.maxQueuedSpans,
          collector: this.collector,
        });
      }
      return;
    }
    let batch = this.batches.at(-1);
    if (batch === undefined || batch.count >= this.opts.maxBatchSpans)
      this.batches.push((batch = new SpanBatch(this.prefix, this.fullBatchBytes)));
    try {
      batch.add(span);
    } catch (err) {
      this.opts.metrics.traceSpansDropped('export-failed', 1);
      if (!this.encodeFailed) this.opts.log.warn('cannot encode a span', { error: err });
      this.encodeFailed = true;
      return;
    }
    this.queuedSpans++;
    if (batch.count === this.opts.maxBatchSpans) this.fullBatchBytes = batch.size;
    if (this.inFlight !== null || this.backingOff) return;
    if (batch.count >= this.opts.maxBatchSpans) this.flush();
    else this.timer ??= this.armTimer(this.opts.batchDelayMs);
  }

  private armTimer(delayMs: number): NodeJS.Timeout {
    const t = setTimeout(() => {
      this.timer = null;
      this.backingOff = false;
      this.flush();
    }, delayMs);
    t.unref();
    return t;
  }

  /** Sends one batch now (unless one is in flight); the rest follows when it is done. */
  private flush(): void {
    if (this.timer !== null) {
      clearTimeout(this.timer);
      this.timer = null;
      this.backingOff = false;
    }
    if (this.inFlight !== null || this.queuedSpans === 0) return;
    const batch = this.batches.shift()!;
    this.queuedSpans -= batch.count;
    this.dropping = false;
    this.inFlight = this.send(batch).then(() => {
      this.inFlight = null;
      if (this.closed) {
        if (this.queuedSpans > 0) this.flush();
      } else if (this.failures > 0) {
        this.backingOff = true;
        this.timer = this.armTimer(backoffDelay(this.failures - 1, this.backoff, mathRandom));
      } else if ((this.batches[0]?.count ?? 0) >= this.opts.maxBatchSpans) this.flush();
      else if (this.queuedSpans > 0) this.timer ??= this.armTimer(this.opts.batchDelayMs);
    });
  }

  /** Where the exports go now (the transport may follow the control plane elsewhere). */
  private get collector(): string {
    return this.transport.collector ?? this.opts.collector;
  }

  private async send(batch: SpanBatch): Promise<void> {
    const collector = this.collector; // the one this export goes to, whatever moves meanwhile
    const refusal = await this.transport.send(batch.body(), this.opts.exportTimeoutMs);
    if (refusal === null) {
      this.opts.metrics.traceSpansExported(batch.count);
      this.failures = 0;
      return;
    }
    this.opts.metrics.traceSpansDropped('export-failed', batch.count);
    if (this.failures === 0)
      this.opts.log.warn('trace export failed', { collector, spans: batch.count, error: refusal });
    this.failures++;
  }

  /**
   * The transport now goes to another collector (trace-follow.ts): what waits is sent now, not
   * after the backoff that the old one's failures set.
   */
  collectorMoved(): void {
    if (this.closed) return;
    this.failures = 0;
    if (this.backingOff) this.flush();
  }

  /**
   * Sends what is queued and stops taking spans; waits for the exports at most `waitMs` (shutdown
   * must not hang on a dead collector), then counts what is left as dropped.
   */
  async close(waitMs = Math.min(this.opts.exportTimeoutMs, 2000)): Promise<void> {
    this.closed = true;
    this.flush();
    const deadline = Date.now() + waitMs;
    while (this.inFlight !== null && Date.now() < deadline) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        this.inFlight,
        new Promise((r) => (timer = setTimeout(r, Math.max(0, deadline - Date.now())))),
      ]);
      clearTimeout(timer);
    }
    if (this.queuedSpans > 0) this.opts.metrics.traceSpansDropped('export-failed', this.queuedSpans);
    this.batches = [];
    this.queuedSpans = 0;
    this.transport.close();
  }
}
