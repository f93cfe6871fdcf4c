// How many connections a control-plane listener (the HTTP API, the gRPC port) holds at once, so
// that one client address cannot keep the others out. Anyone who reaches these ports may connect;
// a plain cap let one client take every connection (and hold them: connections renewed as a head
// timeout closes them, or never closed at all), after which every proxy, Prometheus and the CLI
// were refused. With the cap reached, a newcomer takes the place of the oldest connection of the
// address that holds the most, and only when its own address holds as many is it closed itself.
import type { Socket } from 'node:net';

/** What was closed to keep the cap: the new connection, or the oldest of the address holding most. */
export type ShareVictim = { readonly newcomer: boolean; readonly address: string };

export class ConnectionShare {
  private readonly max: number;
  private readonly onClose: (victim: ShareVictim) => void;
  /** Open connections by client address, oldest first. */
  private readonly byAddress = new Map<string, Set<Socket>>();
  private count = 0;

  /** `onClose` hears of each connection closed to keep the cap (to count and log it). */
  constructor(max: number, onClose: (victim: ShareVictim) => void) {
    this.max = max;
    this.onClose = onClose;
  }

  /** Connections open now. */
  get open(): number {
    return this.count;
  }

  /** A connection just accepted: tracked until it closes, or closed now (or another one) to keep the cap. */
  admit(socket: Socket): void {
    const address = socket.remoteAddress ?? '';
    let own = this.byAddress.get(address);
    if (own === undefined) this.byAddress.set(address, (own = new Set()));
    const mine = own;
    mine.add(socket);
    this.count++;
    socket.once('close', () => {
      this.count--;
      mine.delete(socket);
      if (mine.size === 0 && this.byAddress.get(address) === mine) this.byAddress.delete(address);
    });
    if (this.count <= this.max) return;
    let most = mine;
    for (const held of this.byAddress.values()) if (held.size > most.size) most = held;
    const victim = most === mine ? socket : most.values().next().value!;
    this.onClose({ newcomer: victim === socket, address: victim.remoteAddress ?? '' });
    victim.destroy();
  }
}
