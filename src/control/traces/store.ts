// The embedded collector's memory: the most recent traces, bounded three ways (traces, spans in
// all, spans per trace). A new trace beyond maxTraces, or spans beyond maxSpans, evict the trace
// that was least recently added to; spans beyond a trace's own bound are dropped. Every span not
// kept is counted (spansDropped), never an error for the sender.
import type { ReceivedSpan } from './otlp-decode.ts';

export interface TraceStoreLimits {
  readonly maxTraces: number;
  readonly maxSpans: number;
  readonly maxSpansPerTrace: number;
}

export const DEFAULT_TRACE_STORE_LIMITS: TraceStoreLimits = {
  maxTraces: 1000,
  maxSpans: 20_000,
  maxSpansPerTrace: 500,
};

/** One trace as `trellis trace` lists it. */
export interface TraceSummary {
  readonly trace_id: string;
  /** The root span's service and name (the earliest span's when the root is not here). */
  readonly root_service: string;
  readonly root_name: string;
  readonly services: string[];
  readonly spans: number;
  readonly start_ms: number;
  readonly duration_ms: number;
  readonly error: boolean;
}

export class TraceStore {
  private readonly limits: TraceStoreLimits;
  /** Insertion order is recency: a trace that gets a span moves to the end. */
  private readonly traces = new Map<string, ReceivedSpan[]>();
  private spanCount = 0;
  spansDropped = 0;
  tracesEvicted = 0;

  constructor(limits: TraceStoreLimits = DEFAULT_TRACE_STORE_LIMITS) {
    this.limits = limits;
  }

  get size(): { traces: number; spans: number } {
    return { traces: this.traces.size, spans: this.spanCount };
  }

  add(spans: readonly ReceivedSpan[]): void {
    for (const s of spans) this.addOne(s);
  }

  private addOne(s: ReceivedSpan): void {
    let list = this.traces.get(s.traceId);
    if (list !== undefined) {
      if (list.length >= this.limits.maxSpansPerTrace) {
        this.spansDropped++;
        return;
      }
      this.traces.delete(s.traceId); // to the end: most recent
    } else list = [];
    list.push(s);
    this.traces.set(s.traceId, list);
    this.spanCount++;
    while (this.traces.size > this.limits.maxTraces || this.spanCount > this.limits.maxSpans) {
      const [oldest, spans] = this.traces.entries().next().value!;
      this.traces.delete(oldest);
      this.spanCount -= spans.length;
      this.spansDropped += spans.length;
      this.tracesEvicted++;
    }
  }

  /** The spans of one trace, or null. */
  trace(traceId: string): readonly ReceivedSpan[] | null {
    return this.traces.get(traceId) ?? null;
  }

  /**
   * The most recent traces first; when given, only those with a span of `service` (in
   * `namespace`, when that is given too: a workload is its namespace and name).
   */
  list(service: string | undefined, limit: number, namespace?: string): TraceSummary[] {
    const out: TraceSummary[] = [];
    const all = [...this.traces.values()];
    const touches = (s: ReceivedSpan): boolean =>
      (service === undefined || s.service === service) &&
      (namespace === undefined || s.namespace === namespace);
    for (let i = all.length - 1; i >= 0 && out.length < limit; i--) {
      const spans = all[i]!;
      if ((service !== undefined || namespace !== undefined) && !spans.some(touches)) continue;
      out.push(summarize(spans));
    }
    return out;
  }
}

export function summarize(spans: readonly ReceivedSpan[]): TraceSummary {
  const ids = new Set(spans.map((s) => s.spanId));
  const roots = spans.filter((s) => s.parentSpanId === '' || !ids.has(s.parentSpanId));
  const byStart = (a: ReceivedSpan, b: ReceivedSpan) => a.startMs - b.startMs;
  const root = [...roots].sort(byStart)[0] ?? spans[0]!;
  const start = Math.min(...spans.map((s) => s.startMs));
  const end = Math.max(...spans.map((s) => s.endMs));
  return {
    trace_id: root.traceId,
    root_service: root.service,
    root_name: root.name,
    services: [...new Set(spans.map((s) => s.service))].sort(),
    spans: spans.length,
    start_ms: Math.round(start),
    duration_ms: Math.round((end - start) * 1000) / 1000,
    error: spans.some((s) => s.error),
  };
}
