// The span transport of a proxy whose collector is the control plane's own (`trellis up` without
// --trace-collector: its embedded store takes spans on its HTTP or gRPC API, and `trellis run`
// gives its proxies that address from control.json). Such a proxy also follows the control file
// for its gRPC clients (src/proxy/resolve/control-plane-address.ts); when the control plane
// restarts on other ports, the exports go to the collector the control file names now, with its
// token file read again. Anything else (an external collector, or a control file that names a
// collector other than the configured one) keeps the transport it was configured with.
import { readControlFileSync, type ControlFile } from '../../api/control-file.ts';
import type { Logger } from '../../core/log.ts';
import type { ControlPlaneLocator } from '../resolve/control-plane-address.ts';
import type { SpanTransport } from './trace-export.ts';

/** The control plane's own collector (its URL and token file) in a control file, else null. */
export function ownCollectorOf(info: ControlFile | null): { collector: string; tokenFile: string } | null {
  const t = info?.tracing;
  if (t?.tokenFile === undefined) return null; // only the control plane's own has one
  return { collector: t.collector, tokenFile: t.tokenFile };
}

export interface FollowOptions {
  /** The control file (controlPlane.file). */
  readonly file: string;
  /** The collector the proxy was configured with, and its transport. */
  readonly collector: string;
  readonly transport: SpanTransport;
  /** A transport for another collector URL and token file (may throw: the move is then ignored). */
  readonly transportFor: (collector: string, tokenFile: string) => SpanTransport;
  /** The control file's locator: news of a move, and a look after a failed export. */
  readonly locator: ControlPlaneLocator;
  /** Told when the transport changed (the exporter then sends what waits without its backoff). */
  readonly onMove?: () => void;
  readonly log: Logger;
}

export class FollowingTransport implements SpanTransport {
  readonly #o: FollowOptions;
  #collector: string;
  #transport: SpanTransport;
  readonly #unsubscribe: () => void;

  constructor(o: FollowOptions) {
    this.#o = o;
    this.#collector = o.collector;
    this.#transport = o.transport;
    this.#unsubscribe = o.locator.onMove(() => this.look());
  }

  /** The collector exported to now. */
  get collector(): string {
    return this.#collector;
  }

  async send(body: Buffer, timeoutMs: number): Promise<string | Error | null> {
    const refusal = await this.#transport.send(body, timeoutMs);
    // The control plane may have moved without the file watch noticing: look again.
    if (refusal !== null) this.#o.locator.refresh();
    return refusal;
  }

  /** Reads the control file: a collector of its own other than the current one is exported to from now on. */
  look(): void {
    const own = ownCollectorOf(readControlFileSync(this.#o.file));
    if (own === null || own.collector === this.#collector) return;
    let next: SpanTransport;
    try {
      next = this.#o.transportFor(own.collector, own.tokenFile);
    } catch (error) {
      this.#o.log.warn('cannot export to the restarted control plane', { collector: own.collector, error });
      return;
    }
    const before = this.#transport;
    this.#o.log.info('the control plane moved; exporting spans to its collector', {
      collector: own.collector,
      previous: this.#collector,
    });
    this.#transport = next;
    this.#collector = own.collector;
    before.close(); // an export in flight to the old one fails and is counted
    this.#o.onMove?.();
  }

  close(): void {
    this.#unsubscribe();
    this.#transport.close();
  }
}
