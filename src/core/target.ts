// Where a connection or request goes, and the small helpers to name it.

export interface Target {
  readonly host: string;
  readonly port: number;
}

export function targetKey(t: Target): string {
  return t.host.includes(':') ? `[${t.host}]:${t.port}` : `${t.host}:${t.port}`;
}

/**
 * A map keyed by a target's host, then port: a look-up per request finds its value without
 * building the target's key string (targetKey), which was a new string to hash on every request.
 */
export class TargetMap<V> {
  private readonly byHost = new Map<string, Map<number, V>>();
  private count = 0;

  get size(): number {
    return this.count;
  }

  get(t: Target): V | undefined {
    return this.byHost.get(t.host)?.get(t.port);
  }

  set(t: Target, value: V): void {
    let ports = this.byHost.get(t.host);
    if (ports === undefined) this.byHost.set(t.host, (ports = new Map()));
    if (!ports.has(t.port)) this.count++;
    ports.set(t.port, value);
  }

  delete(t: Target): boolean {
    const ports = this.byHost.get(t.host);
    if (ports === undefined || !ports.delete(t.port)) return false;
    this.count--;
    if (ports.size === 0) this.byHost.delete(t.host);
    return true;
  }

  *values(): IterableIterator<V> {
    for (const ports of this.byHost.values()) yield* ports.values();
  }

  clear(): void {
    this.byHost.clear();
    this.count = 0;
  }
}

/**
 * Parses an authority "host[:port]" ("[v6]:port" for IPv6); `defaultPort` when the port is absent
 * or empty.
 * Returns null when it is not a usable authority.
 */
export function parseAuthority(authority: string, defaultPort: number): Target | null {
  let host: string;
  let rest: string;
  if (authority.startsWith('[')) {
    const close = authority.indexOf(']');
    if (close === -1) return null;
    host = authority.slice(1, close);
    rest = authority.slice(close + 1);
  } else {
    const colon = authority.lastIndexOf(':');
    if (colon === -1) {
      host = authority;
      rest = '';
    } else {
      host = authority.slice(0, colon);
      rest = authority.slice(colon);
    }
  }
  if (host.length === 0 || host.length > 253) return null;
  let port = defaultPort;
  // An empty port (`host:`) means the default (RFC 3986 3.2.3: port = *DIGIT).
  if (rest !== '' && rest !== ':') {
    if (!/^:\d{1,5}$/.test(rest)) return null;
    port = Number(rest.slice(1));
    if (port < 1 || port > 65535) return null;
  }
  return { host, port };
}
