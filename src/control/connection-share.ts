// The connections of a control-plane listener (the HTTP API, the gRPC port), shared among client
// addresses (fair-share.ts): with the cap reached, a newcomer takes the place of the oldest
// connection of the address that holds the most, or is closed itself when its own address holds
// as many.
import type { Socket } from 'node:net';
import { FairShare } from './fair-share.ts';

/** What was closed to keep the cap: the new connection, or the oldest of the address holding most. */
export interface ShareVictim {
  readonly newcomer: boolean;
  readonly address: string;
}

export class ConnectionShare {
  private readonly share: FairShare;
  private readonly onClose: (victim: ShareVictim) => void;

  /** `onClose` hears of each connection closed to keep the cap (to count and log it). */
  constructor(max: number, onClose: (victim: ShareVictim) => void) {
    this.share = new FairShare(max);
    this.onClose = onClose;
  }

  /** A connection just accepted: tracked until it closes, or closed now (or another one) to keep the cap. */
  admit(socket: Socket): void {
    const address = socket.remoteAddress ?? '';
    const release = this.share.take(address, () => {
      this.onClose({ newcomer: false, address });
      socket.destroy();
    });
    if (release === null) {
      this.onClose({ newcomer: true, address });
      socket.destroy();
      return;
    }
    socket.once('close', release);
  }
}
