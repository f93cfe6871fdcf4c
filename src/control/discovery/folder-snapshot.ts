// A value read from the state folder and kept up to date: a FolderScanner (folder-scanner.ts)
// whose passes read the value again, and listeners told only when what they care about (the
// value's key) actually changed. The policy source (../policy/local.ts) and the route source
// (../routes/source.ts) are each one.
import type { Logger } from '../../core/log.ts';
import { ChangeListeners } from '../policy/source.ts';
import { FolderScanner } from './folder-scanner.ts';
import { makeStateDir } from './state-file-io.ts';

export interface FolderSnapshotOptions<T> {
  readonly root: string;
  readonly log: Logger;
  /** How long to wait after a file event for more before rescanning. Default 50 ms. */
  readonly debounceMs?: number;
  /** The fallback full rescan. Default 2000 ms. */
  readonly rescanIntervalMs?: number;
  /** A folder made before the first scan (the source's own, so that it can be watched). */
  readonly folder: string;
  /** The value before the first read. */
  readonly initial: T;
  /** Reads the value (never throws: bad files are the reader's to log and skip). */
  readonly read: () => Promise<T>;
  /** What listeners care about; they are told when it changes. */
  readonly key: (value: T) => unknown;
}

export class FolderSnapshot<T> {
  readonly #options: FolderSnapshotOptions<T>;
  readonly #scanner: FolderScanner;
  readonly #listeners: ChangeListeners;
  readonly #ready: Promise<void>;
  #value: T;
  #key = '';
  #closed = false;

  constructor(options: FolderSnapshotOptions<T>) {
    this.#options = options;
    this.#value = options.initial;
    this.#listeners = new ChangeListeners((error) => options.log.error('listener threw', { error }));
    this.#scanner = new FolderScanner({
      root: options.root,
      debounceMs: options.debounceMs ?? 50,
      rescanIntervalMs: options.rescanIntervalMs ?? 2000,
      log: options.log,
      pass: () => this.#pass(),
    });
    this.#ready = makeStateDir(options.folder).then(() => this.#scanner.start());
    this.#ready.catch(() => {}); // reported to whoever awaits ready()
  }

  get value(): T {
    return this.#value;
  }

  /** Resolves once the first full read is done. */
  ready(): Promise<void> {
    return this.#ready;
  }

  onChange(listener: () => void): () => void {
    return this.#listeners.add(listener);
  }

  /** Scans the folder now (after an in-progress scan, if any) and tells listeners of changes. */
  rescan(): Promise<void> {
    return this.#scanner.rescan();
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#listeners.clear();
    await this.#scanner.close();
  }

  async #pass(): Promise<void> {
    const value = await this.#options.read();
    if (this.#closed) return;
    const key = JSON.stringify(this.#options.key(value));
    this.#value = value;
    if (key !== this.#key) {
      this.#key = key;
      this.#listeners.notify();
    }
  }
}
