// Newline-delimited JSON read from a byte stream (a live tap's stream: the proxies' GET /tap, the
// control plane's GET /api/tap): bytes in, whole lines out, each parsed to a JSON object. A line
// longer than maxLineBytes is skipped (counted) rather than held, so a peer cannot make the
// reader buffer without bound; a line that is not a JSON object is skipped (counted) too.
// Lines may be split anywhere across chunks, also inside a multi-byte UTF-8 character.

export interface NdjsonCounts {
  /** Lines skipped for being longer than the bound. */
  tooLong: number;
  /** Lines skipped for not being a JSON object. */
  malformed: number;
}

export class NdjsonReader {
  readonly counts: NdjsonCounts = { tooLong: 0, malformed: 0 };
  private readonly maxLineBytes: number;
  private readonly onObject: (value: Record<string, unknown>) => void;
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  /** The current line went over the bound: its bytes are dropped until its newline. */
  private skipping = false;

  constructor(maxLineBytes: number, onObject: (value: Record<string, unknown>) => void) {
    this.maxLineBytes = maxLineBytes;
    this.onObject = onObject;
  }

  push(chunk: Buffer): void {
    let start = 0;
    for (let nl = chunk.indexOf(10, start); nl !== -1; nl = chunk.indexOf(10, start)) {
      this.take(chunk.subarray(start, nl));
      this.endLine();
      start = nl + 1;
    }
    if (start < chunk.length) this.take(chunk.subarray(start));
  }

  /** The stream ended: a last line without its newline still counts. */
  end(): void {
    if (this.pendingBytes > 0 || this.skipping) this.endLine();
  }

  private take(part: Buffer): void {
    if (this.skipping || part.length === 0) return;
    if (this.pendingBytes + part.length > this.maxLineBytes) {
      this.skipping = true;
      this.pending = [];
      this.pendingBytes = 0;
      return;
    }
    this.pending.push(part);
    this.pendingBytes += part.length;
  }

  private endLine(): void {
    if (this.skipping) {
      this.skipping = false;
      this.counts.tooLong++;
      return;
    }
    const text = Buffer.concat(this.pending, this.pendingBytes).toString('utf8').trim();
    this.pending = [];
    this.pendingBytes = 0;
    if (text === '') return;
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch {
      this.counts.malformed++;
      return;
    }
    if (typeof value !== 'object' || value === null || Array.isArray(value)) {
      this.counts.malformed++;
      return;
    }
    this.onObject(value as Record<string, unknown>);
  }
}
