// Where a connection or request goes, and the small helpers to name it.

export interface Target {
  readonly host: string;
  readonly port: number;
}

export function targetKey(t: Target): string {
  return t.host.includes(':') ? `[${t.host}]:${t.port}` : `${t.host}:${t.port}`;
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
