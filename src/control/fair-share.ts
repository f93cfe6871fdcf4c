// A bounded set of places (connections, watch streams) shared among client addresses, so that one
// address cannot keep the others out. Anyone who reaches the control plane's ports may take places;
// a plain cap let one caller take them all, after which every proxy was refused. With the cap
// reached, a newcomer takes the place of the oldest holder of the address that holds the most, and
// is refused only when its own address holds as many.

/** One place's holder: `evict` ends it when another address needs its place. */
interface Holder {
  readonly evict: () => void;
}

export class FairShare {
  private readonly max: number;
  /** Holders by client address, oldest first. */
  private readonly byAddress = new Map<string, Set<Holder>>();
  private count = 0;

  constructor(max: number) {
    this.max = max;
  }

  /** Places held now. */
  get held(): number {
    return this.count;
  }

  /**
   * Takes a place for `address`: its release (idempotent), or null when refused. Another
   * address's oldest holder may be evicted to make room (released first, then told by `evict`).
   */
  take(address: string, evict: () => void): (() => void) | null {
    let own = this.byAddress.get(address);
    if (own === undefined) this.byAddress.set(address, (own = new Set()));
    const mine = own;
    const holder: Holder = { evict };
    mine.add(holder);
    this.count++;
    const release = (): void => {
      if (!mine.delete(holder)) return;
      this.count--;
      if (mine.size === 0 && this.byAddress.get(address) === mine) this.byAddress.delete(address);
    };
    if (this.count <= this.max) return release;
    let most = mine;
    for (const held of this.byAddress.values()) if (held.size > most.size) most = held;
    if (most === mine) {
      release();
      return null;
    }
    // `most` holds more than `mine`, so it is not left empty.
    const victim = most.values().next().value!;
    most.delete(victim);
    this.count--;
    victim.evict();
    return release;
  }
}

/** The address part of "host:port" or "[v6]:port" (grpc-js's getPeer()); the whole text otherwise. */
export function addressOf(peer: string): string {
  const colon = peer.lastIndexOf(':');
  if (colon <= 0 || !/^\d+$/.test(peer.slice(colon + 1))) return peer;
  return peer.slice(0, colon).replace(/^\[|\]$/g, '');
}
