// Waiting for a child Trellis process (proxy, control plane, demo app) to print its one JSON ready
// line, {"event":"ready", ...addresses}, on stdout. Used by `trellis run` and `trellis demo`.
import type { ChildProcess } from 'node:child_process';

export interface ReadyLineOptions {
  /** Names the child in the timeout error, e.g. "the proxy". */
  readonly what: string;
  /** The error message when the child exits before it is ready. */
  readonly onExit: (code: number | null, signal: NodeJS.Signals | null) => string;
  readonly timeoutMs?: number;
}

/** The first JSON line with "event":"ready" on the child's stdout; later output is read and dropped. */
export function readyLine(proc: ChildProcess, opts: ReadyLineOptions): Promise<Record<string, string>> {
  const timeoutMs = opts.timeoutMs ?? 30_000;
  return new Promise((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`${opts.what} was not ready within ${timeoutMs / 1000} s`)),
      timeoutMs,
    );
    let out = '';
    const onData = (d: string): void => {
      out += d;
      const lines = out.split('\n');
      out = lines.pop()!.slice(-10_000);
      for (const line of lines) {
        let parsed: Record<string, string> | null = null;
        try {
          parsed = JSON.parse(line) as Record<string, string>;
        } catch {
          continue; // not the ready line
        }
        if (parsed?.event !== 'ready') continue;
        clearTimeout(timer);
        proc.stdout!.off('data', onData);
        proc.stdout!.resume(); // later output is not read
        resolve(parsed);
        return;
      }
    };
    proc.stdout!.setEncoding('utf8');
    proc.stdout!.on('data', onData);
    proc.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(opts.onExit(code, signal)));
    });
  });
}
