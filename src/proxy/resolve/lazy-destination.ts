// The Destination API resolver, loaded when the proxy starts (outbound/warm-up.ts preloads it) or
// on first use rather than with the module: a proxy made without a control plane, or that only
// forwards to addresses, never loads @grpc/grpc-js. Resolutions asked for while it loads start
// when it is there (or report the load failure), and can be cancelled before.
import type { Logger } from '../../core/log.ts';
import type { Update } from '../../core/endpoints.ts';
import type { Resolution, Resolver } from './resolver.ts';

export class LazyDestinationResolver implements Resolver {
  private readonly address: string;
  private readonly log: Logger;
  private loading: Promise<Resolver & { close(): void }> | null = null;
  private closed = false;

  constructor(address: string, log: Logger) {
    this.address = address;
    this.log = log;
  }

  resolve(target: string, onUpdate: (update: Update) => void, onError: (error: Error) => void): Resolution {
    let inner: Resolution | null = null;
    let cancelled = false;
    this.load().then(
      (resolver) => {
        if (!cancelled && !this.closed) inner = resolver.resolve(target, onUpdate, onError);
      },
      (error: unknown) => {
        if (!cancelled) onError(error as Error);
      },
    );
    return {
      cancel: () => {
        cancelled = true;
        inner?.cancel();
      },
    };
  }

  /** Loads the client (once); warm-up.ts calls it at start, before any request needs it. */
  load(): Promise<Resolver & { close(): void }> {
    return (this.loading ??= import('./destination-client.ts').then(
      ({ DestinationResolver }) => new DestinationResolver({ address: this.address, log: this.log }),
    ));
  }

  close(): void {
    this.closed = true;
    this.loading?.then(
      (resolver) => resolver.close(),
      () => {},
    );
  }
}
