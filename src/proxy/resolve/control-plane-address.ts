// Where the proxy's clients of the control plane (Destination, Policy, Identity) call it. By
// default each calls the address it was configured with. A proxy that follows a control file
// (`controlPlane.file`: `trellis run` passes `<state>/control.json`) calls the gRPC address
// written there instead, re-read when the file changes (fs.watch on its folder) and after every
// failed call: a control plane restarted on other ports (`trellis up` with port 0) is found again,
// and one restarted on the same ports is called again at once rather than after a backoff. While
// the file is missing (the control plane is stopped) the last address stays.
//
// The file is followed process-wide (one proxy per process), set once from the configuration by
// startProxy (followControlFile); the clients take their locator from
// locateControlPlane(configured), tests may hand in their own. Nothing here loads gRPC.
import { type FSWatcher, watch } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { basename, dirname } from 'node:path';
import { silentLogger, type Logger } from '../../core/log.ts';
import { SingleFlight } from '../../core/single-flight.ts';
import { type ControlFile, parseControlFile, readControlFileSync } from '../../api/control-file.ts';

/** Where to call the control plane now, and news of it moving. */
export interface ControlPlaneLocator {
  /** "host:port" to call now. */
  current(): string;
  /** A call failed: look again (the listeners hear of a move). */
  refresh(): void;
  /** `listener` runs when the control plane restarted or moved; returns the unsubscribe. */
  onMove(listener: () => void): () => void;
}

/** A control file followed while the process runs. */
export class ControlFileFollower {
  readonly path: string;
  readonly #log: Logger;
  readonly #listeners = new Set<() => void>();
  #info: ControlFile | null;
  #watcher: FSWatcher | null = null;
  readonly #reading = new SingleFlight(() => this.#read());

  constructor(path: string, log: Logger = silentLogger) {
    this.path = path;
    this.#log = log.child({ component: 'control-file' });
    this.#info = readControlFileSync(path);
    try {
      const name = basename(path);
      this.#watcher = watch(dirname(path), { persistent: false }, (_event, file) => {
        if (file === null || file === name) this.refresh();
      });
      this.#watcher.on('error', () => {
        this.#watcher?.close();
        this.#watcher = null; // failed calls still make it look again
      });
    } catch (error) {
      this.#log.debug('cannot watch the control file; reading it after failed calls only', { error });
    }
  }

  /** A locator that calls the file's address, or `configured` while the file was never readable. */
  locator(configured: string): ControlPlaneLocator {
    return {
      current: () => this.#info?.grpc ?? configured,
      refresh: () => this.refresh(),
      onMove: (listener) => {
        this.#listeners.add(listener);
        return () => void this.#listeners.delete(listener);
      },
    };
  }

  /** Reads the file again (single-flight); tells the listeners when its control plane changed. */
  refresh(): Promise<void> {
    return this.#reading.run();
  }

  close(): void {
    this.#watcher?.close();
    this.#watcher = null;
    this.#listeners.clear();
  }

  /** One reading of the file. */
  async #read(): Promise<void> {
    const next = parseControlFile(await readFile(this.path, 'utf8').catch(() => ''));
    const before = this.#info;
    if (next === null || (before?.grpc === next.grpc && before.pid === next.pid)) return;
    this.#info = next;
    this.#log.info('the control plane restarted; calling it at its new address', {
      address: next.grpc,
      pid: next.pid,
      ...(before === null ? {} : { previous: before.grpc }),
    });
    for (const listener of Array.from(this.#listeners)) {
      try {
        listener();
      } catch (error) {
        this.#log.warn('a control plane move listener threw', { error });
      }
    }
  }
}

let followed: ControlFileFollower | null = null;

/** Makes every client of this process follow the control file at `path` (configuration only). */
export function followControlFile(path: string, log?: Logger): void {
  followed?.close();
  followed = new ControlFileFollower(path, log);
}

/** The locator of a client configured with `configured`: the followed file's, else that address. */
export function locateControlPlane(configured: string): ControlPlaneLocator {
  return followed?.locator(configured) ?? fixedLocator(configured);
}

/** A control plane that never moves. */
export function fixedLocator(address: string): ControlPlaneLocator {
  return { current: () => address, refresh: () => {}, onMove: () => () => {} };
}
