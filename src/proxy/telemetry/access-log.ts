// The access log: one JSON line per HTTP request, to stdout, stderr or a file (config log.access).
// Lines go through a write stream's buffer; when the destination falls behind (the buffer holds
// more than maxBufferedBytes) lines are dropped and counted rather than blocking the data path or
// growing memory without bound. The first drop of each episode is logged as a warning.
import { closeSync, createWriteStream, openSync } from 'node:fs';
import type { Writable } from 'node:stream';
import { ConfigError } from '../../core/errors.ts';
import { silentLogger, type Logger } from '../../core/log.ts';
import type { Direction, HttpProtocol } from './metrics.ts';

export interface AccessLogEntry {
  /** Milliseconds since the Unix epoch (written as an ISO string); callers pass the finish time. */
  ts: number;
  direction: Direction;
  protocol: HttpProtocol;
  method: string;
  authority: string;
  path: string;
  /** 0 when no response was sent. */
  status: number;
  durationMs: number;
  bytesIn: number;
  bytesOut: number;
  peer: string;
  error?: string;
}

export interface AccessLog {
  record(entry: AccessLogEntry): void;
  /** Lines dropped because the destination fell behind or failed. */
  readonly dropped: number;
  /** Flushes what is buffered; closes the file (stdout and stderr stay open). */
  close(): Promise<void>;
}

export interface AccessLogOptions {
  /** Buffered bytes above which lines are dropped. Default 1 MiB. */
  maxBufferedBytes?: number;
  /** Where to warn about drops and write errors. */
  log?: Logger;
}

const DEFAULT_MAX_BUFFERED_BYTES = 1 << 20;

class StreamAccessLog implements AccessLog {
  dropped = 0;
  private readonly stream: Writable;
  private readonly ownsStream: boolean;
  private readonly maxBuffered: number;
  private readonly log: Logger;
  private failed = false;
  private closed = false;
  private dropping = false;

  constructor(stream: Writable, ownsStream: boolean, maxBuffered: number, log: Logger) {
    this.stream = stream;
    this.ownsStream = ownsStream;
    this.maxBuffered = maxBuffered;
    this.log = log;
    stream.on('error', (err: Error) => {
      if (!this.failed) this.log.warn('access log write failed; dropping further lines', { err });
      this.failed = true;
    });
  }

  record(entry: AccessLogEntry): void {
    if (this.closed || this.failed || this.stream.writableLength >= this.maxBuffered) {
      this.dropped++;
      if (!this.dropping && !this.closed && !this.failed) {
        this.dropping = true;
        this.log.warn('access log is behind; dropping lines', { bufferedBytes: this.stream.writableLength });
      }
      return;
    }
    this.dropping = false;
    try {
      this.stream.write(formatEntry(entry));
    } catch {
      this.dropped++;
    }
  }

  close(): Promise<void> {
    if (this.closed) return Promise.resolve();
    this.closed = true;
    const stream = this.stream;
    return new Promise<void>((resolve) => {
      if (this.ownsStream) {
        if (stream.destroyed) return resolve();
        stream.once('close', () => resolve());
        stream.end();
      } else if (stream.writableLength > 0 && !this.failed) {
        // stdout/stderr: wait for the buffer to drain, but never hang shutdown on a stuck pipe.
        const timer = setTimeout(resolve, 1000);
        stream.once('drain', () => {
          clearTimeout(timer);
          resolve();
        });
      } else {
        resolve();
      }
    });
  }
}

function formatEntry(e: AccessLogEntry): string {
  let ts: string;
  try {
    ts = new Date(e.ts).toISOString();
  } catch {
    ts = String(e.ts); // not a valid time: write it as it came
  }
  const line: Record<string, unknown> = {
    ts,
    direction: e.direction,
    protocol: e.protocol,
    method: e.method,
    authority: e.authority,
    path: e.path,
    status: e.status,
    durationMs: e.durationMs,
    bytesIn: e.bytesIn,
    bytesOut: e.bytesOut,
    peer: e.peer,
  };
  if (e.error !== undefined) line.error = e.error;
  return JSON.stringify(line) + '\n';
}

/**
 * Opens the access log for a `log.access` setting: 'off' (null), 'stdout', 'stderr' or a file
 * path (appended to). Throws ConfigError when the file cannot be opened, so a bad path stops
 * startup with a clear message instead of silently logging nothing.
 */
export function openAccessLog(target: string, opts: AccessLogOptions = {}): AccessLog | null {
  const maxBuffered = opts.maxBufferedBytes ?? DEFAULT_MAX_BUFFERED_BYTES;
  const log = opts.log ?? silentLogger;
  switch (target) {
    case 'off':
    case '':
      return null;
    case 'stdout':
      return new StreamAccessLog(process.stdout, false, maxBuffered, log);
    case 'stderr':
      return new StreamAccessLog(process.stderr, false, maxBuffered, log);
  }
  let fd: number;
  try {
    fd = openSync(target, 'a');
  } catch (err) {
    throw new ConfigError('log.access', `cannot open access log ${target}: ${(err as Error).message}`);
  }
  try {
    const stream = createWriteStream(target, { fd, highWaterMark: 64 * 1024 });
    return new StreamAccessLog(stream, true, maxBuffered, log);
  } catch (err) {
    closeSync(fd);
    throw err;
  }
}
