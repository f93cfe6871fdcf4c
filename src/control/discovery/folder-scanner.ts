// Keeping up with a folder of small files (the state folder of one-machine mode): a recursive
// fs.watch, debounced, with a periodic full rescan as the fallback for events fs.watch misses
// (new subfolders, editors that replace files, platforms without recursive watching). Scans are
// single-flight: a scan asked for while one runs makes that one go round once more, so a burst of
// events costs at most two passes. The discovery watcher (local.ts) runs one, and FolderSnapshot
// (folder-snapshot.ts) one for each of the policy and route sources; each does its own reading in
// `pass`.
import { watch, type FSWatcher } from 'node:fs';
import type { Logger } from '../../core/log.ts';
import { SingleFlight } from '../../core/single-flight.ts';

export interface FolderScannerOptions {
  readonly root: string;
  /** How long to wait after a file event for more before rescanning. */
  readonly debounceMs: number;
  /** The fallback full rescan. */
  readonly rescanIntervalMs: number;
  readonly log: Logger;
  /** One scan: read the folder and act on what changed. */
  readonly pass: () => Promise<void>;
}

export class FolderScanner {
  readonly #options: FolderScannerOptions;
  #fsWatcher: FSWatcher | null = null;
  #debounceTimer: NodeJS.Timeout | null = null;
  #rescanTimer: NodeJS.Timeout | null = null;
  readonly #scan: SingleFlight;
  #closed = false;

  constructor(options: FolderScannerOptions) {
    this.#options = options;
    this.#scan = new SingleFlight(options.pass, () => this.#closed);
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Starts watching (the folder must exist) and resolves after the first scan. */
  async start(): Promise<void> {
    if (this.#closed) return;
    const { root, log } = this.#options;
    try {
      this.#fsWatcher = watch(root, { recursive: true, persistent: false }, () => this.#onFileEvent());
      this.#fsWatcher.on('error', (error) => {
        log.warn('watching the state folder failed; relying on the periodic rescan', { error });
        this.#fsWatcher?.close();
        this.#fsWatcher = null;
      });
    } catch (error) {
      log.warn('cannot watch the state folder; relying on the periodic rescan', { error });
    }
    this.#rescanTimer = setInterval(() => void this.rescan(), this.#options.rescanIntervalMs);
    this.#rescanTimer.unref();
    await this.rescan();
  }

  /** Scans now (after an in-progress scan, if any). */
  rescan(): Promise<void> {
    if (this.#closed) return Promise.resolve();
    return this.#scan.run();
  }

  /** Stops watching; resolves once a scan in progress has ended. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#fsWatcher?.close();
    this.#fsWatcher = null;
    if (this.#debounceTimer !== null) clearTimeout(this.#debounceTimer);
    if (this.#rescanTimer !== null) clearInterval(this.#rescanTimer);
    await this.#scan.running?.catch(() => {});
  }

  #onFileEvent(): void {
    if (this.#closed) return;
    if (this.#debounceTimer !== null) clearTimeout(this.#debounceTimer);
    this.#debounceTimer = setTimeout(() => {
      this.#debounceTimer = null;
      void this.rescan();
    }, this.#options.debounceMs);
    this.#debounceTimer.unref();
  }
}
