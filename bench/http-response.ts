// The two small helpers the fixed-rate generator needs: a minimal HTTP/1.1 response parser
// (Content-Length and chunked bodies, enough for the benchmark's tiny "ok" responses through any
// proxy) and nearest-rank percentiles.

export interface ParsedResponse {
  readonly status: number;
  /** Bytes of the whole response (head + body) at the start of the buffer. */
  readonly length: number;
  /** The server will close the connection after this response. */
  readonly close: boolean;
}

const CRLF = Buffer.from('\r\n');
const HEAD_END = Buffer.from('\r\n\r\n');

/** Parses the response at the start of `buf`; 'incomplete' until all of it has arrived. */
export function parseResponse(buf: Buffer): ParsedResponse | 'incomplete' | 'invalid' {
  const headEnd = buf.indexOf(HEAD_END);
  if (headEnd < 0) return buf.length > 64 * 1024 ? 'invalid' : 'incomplete';
  const head = buf.toString('latin1', 0, headEnd);
  const m = /^HTTP\/1\.([01]) (\d{3})/.exec(head);
  if (!m) return 'invalid';
  const status = Number(m[2]);
  let contentLength = -1;
  let chunked = false;
  let close = m[1] === '0';
  for (const line of head.split('\r\n').slice(1)) {
    const colon = line.indexOf(':');
    if (colon < 0) continue;
    const name = line.slice(0, colon).trim().toLowerCase();
    const value = line
      .slice(colon + 1)
      .trim()
      .toLowerCase();
    if (name === 'content-length') contentLength = Number(value);
    else if (name === 'transfer-encoding') chunked = value.includes('chunked');
    else if (name === 'connection')
      close = value.includes('close') || (close && !value.includes('keep-alive'));
  }
  const bodyStart = headEnd + HEAD_END.length;
  if (status === 204 || status === 304 || (status >= 100 && status < 200)) {
    return { status, length: bodyStart, close };
  }
  if (chunked) {
    const end = chunkedBodyEnd(buf, bodyStart);
    if (end === 'incomplete' || end === 'invalid') return end;
    return { status, length: end, close };
  }
  if (contentLength >= 0) {
    if (!Number.isSafeInteger(contentLength)) return 'invalid';
    const end = bodyStart + contentLength;
    return buf.length >= end ? { status, length: end, close } : 'incomplete';
  }
  // No length: the body runs to the end of the connection; the benchmark treats that as an error.
  return 'invalid';
}

function chunkedBodyEnd(buf: Buffer, start: number): number | 'incomplete' | 'invalid' {
  let at = start;
  while (true) {
    const lineEnd = buf.indexOf(CRLF, at);
    if (lineEnd < 0) return 'incomplete';
    const size = parseInt(buf.toString('latin1', at, lineEnd).split(';')[0]!.trim(), 16);
    if (!Number.isFinite(size) || size < 0) return 'invalid';
    if (size === 0) {
      // Trailer section: header lines until an empty line.
      let t = lineEnd + 2;
      while (true) {
        const e = buf.indexOf(CRLF, t);
        if (e < 0) return 'incomplete';
        if (e === t) return e + 2;
        t = e + 2;
      }
    }
    const next = lineEnd + 2 + size + 2;
    if (buf.length < next) return 'incomplete';
    at = next;
  }
}

export interface Percentiles {
  readonly count: number;
  readonly mean: number;
  readonly p50: number;
  readonly p90: number;
  readonly p99: number;
  readonly p999: number;
  readonly max: number;
}

/** Nearest-rank percentiles of `values` (NaN everywhere when there are none). */
export function percentiles(values: Float64Array | readonly number[]): Percentiles {
  const sorted = Float64Array.from(values).sort();
  const n = sorted.length;
  const at = (q: number): number => (n === 0 ? NaN : sorted[Math.min(n - 1, Math.ceil(q * n) - 1)]!);
  let sum = 0;
  for (const v of sorted) sum += v;
  return {
    count: n,
    mean: n === 0 ? NaN : sum / n,
    p50: at(0.5),
    p90: at(0.9),
    p99: at(0.99),
    p999: at(0.999),
    max: n === 0 ? NaN : sorted[n - 1]!,
  };
}
