// Sending finished spans to an OTLP/HTTP collector: `POST {collector}/v1/traces`, protobuf
// (trace-otlp.ts), in batches of at most maxBatchSpans, sent when a batch is full or batchDelayMs
// after its first span. Nothing here ever waits on the data path: add() appends to a bounded
// queue (maxQueuedSpans) or, when it is full, drops the span and counts it; at most one export is
// in flight (bounded by exportTimeoutMs), so a dead or slow collector costs memory of at most
// maxQueuedSpans + maxBatchSpans spans and otherwise only dropped spans, counted
// (trellis_trace_spans_dropped_total) and logged once per episode.
//
// node:http (and node:https) are loaded on the first export, not with the proxy: a proxy that does
// not trace (or has not finished a traced request yet) does not pay their memory.
import type http from 'node:http';
import type { Logger } from '../../core/log.ts';
import { encodeTraceRequest, type OtlpResource } from './trace-otlp.ts';
import type { FinishedSpan } from './trace-span.ts';
import type { ProxyMetrics } from './metrics.ts';

export interface SpanExporterOptions {
  /** The collector's OTLP/HTTP base URL (spans go to its /v1/traces). */
  readonly collector: string;
  readonly resource: OtlpResource;
  readonly maxQueuedSpans: number;
  readonly maxBatchSpans: number;
  readonly batchDelayMs: number;
  readonly exportTimeoutMs: number;
  readonly metrics: Pick<ProxyMetrics, 'traceSpansExported' | 'traceSpansDropped'>;
  readonly log: Logger;
}

/** Where finished spans go. */
export interface SpanSink {
  add(span: FinishedSpan): void;
  close(): Promise<void>;
}

/** The URL spans are POSTed to: the base URL with /v1/traces appended (kept when already there). */
export function tracesUrl(collector: string): URL {
  const url = new URL(collector);
  if (!url.pathname.endsWith('/v1/traces')) url.pathname = url.pathname.replace(/\/+$/, '') + '/v1/traces';
  return url;
}

export class OtlpHttpExporter implements SpanSink {
  private readonly opts: SpanExporterOptions;
  private readonly url: URL;
  private client: { request: typeof http.request; agent: http.Agent } | null = null;
  private queue: FinishedSpan[] = [];
  private timer: NodeJS.Timeout | null = null;
  private inFlight: Promise<void> | null = null;
  private dropping = false;
  private failing = false;
  private closed = false;

  constructor(opts: SpanExporterOptions) {
    this.opts = opts;
    this.url = tracesUrl(opts.collector);
  }

  private async httpClient(): Promise<{ request: typeof http.request; agent: http.Agent }> {
    if (this.client !== null) return this.client;
    const mod = this.url.protocol === 'https:' ? await import('node:https') : await import('node:http');
    this.client = { request: mod.request, agent: new mod.Agent({ keepAlive: true, maxSockets: 1 }) };
    return this.client;
  }

  /** Spans waiting to be sent (the bound is maxQueuedSpans). */
  get queued(): number {
    return this.queue.length;
  }

  add(span: FinishedSpan): void {
    if (this.closed || this.queue.length >= this.opts.maxQueuedSpans) {
      this.opts.metrics.traceSpansDropped('queue-full', 1);
      if (!this.dropping && !this.closed) {
        this.dropping = true;
        this.opts.log.warn('trace export queue is full; dropping spans', {
          maxQueuedSpans: this.opts.maxQueuedSpans,
          collector: this.opts.collector,
        });
      }
      return;
    }
    this.queue.push(span);
    if (this.inFlight !== null) return;
    if (this.queue.length >= this.opts.maxBatchSpans) this.flush();
    else this.timer ??= this.armTimer();
  }

  private armTimer(): NodeJS.Timeout {
    const t = setTimeout(() => {
      this.timer = null;
      this.flush();
    }, this.opts.batchDelayMs);
    t.unref();
    return t;
  }

  /** Sends one batch now (unless one is in flight); the rest follows when it is done. */
  private flush(): void {
    if (this.timer !== null) {
      clearTimeout(this.timer);
      this.timer = null;
    }
    if (this.inFlight !== null || this.queue.length === 0) return;
    const batch =
      this.queue.length <= this.opts.maxBatchSpans
        ? this.queue
        : this.queue.slice(0, this.opts.maxBatchSpans);
    this.queue = batch === this.queue ? [] : this.queue.slice(batch.length);
    this.dropping = false;
    this.inFlight = this.send(batch).then(() => {
      this.inFlight = null;
      if (this.queue.length >= this.opts.maxBatchSpans || (this.closed && this.queue.length > 0))
        this.flush();
      else if (this.queue.length > 0) this.timer ??= this.armTimer();
    });
  }

  private async send(batch: FinishedSpan[]): Promise<void> {
    let body: Buffer;
    try {
      body = encodeTraceRequest(this.opts.resource, batch);
    } catch (err) {
      this.failed(batch.length, 'cannot encode spans', err);
      return;
    }
    const status = await this.post(body);
    if (typeof status === 'number' && status >= 200 && status < 300) {
      this.opts.metrics.traceSpansExported(batch.length);
      this.failing = false;
    } else
      this.failed(
        batch.length,
        'trace export failed',
        typeof status === 'number' ? `HTTP ${status}` : status,
      );
  }

  private failed(n: number, message: string, error: unknown): void {
    this.opts.metrics.traceSpansDropped('export-failed', n);
    if (!this.failing) this.opts.log.warn(message, { collector: this.opts.collector, spans: n, error });
    this.failing = true;
  }

  /** The response status, or the error that stopped the request (never rejects). */
  private async post(body: Buffer): Promise<number | Error> {
    let client: { request: typeof http.request; agent: http.Agent };
    try {
      client = await this.httpClient();
    } catch (err) {
      return err as Error;
    }
    const { request, agent } = client;
    return new Promise((resolve) => {
      let done = false;
      const finish = (v: number | Error): void => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        resolve(v);
      };
      const req = request(this.url, {
        method: 'POST',
        agent,
        headers: { 'content-type': 'application/x-protobuf', 'content-length': body.length },
      });
      const timer = setTimeout(() => {
        req.destroy(new Error(`no answer within ${this.opts.exportTimeoutMs} ms`));
      }, this.opts.exportTimeoutMs);
      timer.unref();
      req.on('error', (err) => finish(err));
      req.on('response', (res) => {
        res.resume(); // the ExportTraceServiceResponse is not needed
        res.on('error', (err) => finish(err));
        res.on('end', () => finish(res.statusCode ?? 0));
        res.on('close', () => finish(res.statusCode ?? 0));
      });
      req.end(body);
    });
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
    if (this.queue.length > 0) this.opts.metrics.traceSpansDropped('export-failed', this.queue.length);
    this.queue = [];
    this.client?.agent.destroy();
  }
}
