// Loop detection: whether a target is one of the proxy's own listeners (one of its ports on an
// address of this host, however it is spelled). Sending there would make the proxy call itself
// without end. Built once per proxy (runtime.ts); the host's interface addresses are read then.
import net from 'node:net';
import { networkInterfaces } from 'node:os';
import type { Target } from '../../core/target.ts';

export class LoopGuard {
  /** The ports the proxy listens on (proxy.ts adds each one once it is bound). */
  private readonly ownPorts: ReadonlySet<number>;
  /** This host's interface addresses (canonical). */
  private readonly interfaceAddresses: ReadonlySet<string> = ownInterfaceAddresses();

  constructor(ownPorts: ReadonlySet<number>) {
    this.ownPorts = ownPorts;
  }

  /**
   * Whether a target is one of the proxy's own listeners: one of its ports on an address of this
   * host, however it is spelled (LOCALHOST., 127.1, 2130706433, ::ffff:127.0.0.1, an interface
   * address).
   */
  isLoop(t: Target): boolean {
    if (!this.ownPorts.has(t.port)) return false;
    const host = canonicalHost(t.host);
    if (host === 'localhost' || host.endsWith('.localhost')) return true;
    const family = net.isIP(host);
    if (family === 0) return false;
    return THIS_HOST.check(host, family === 4 ? 'ipv4' : 'ipv6') || this.interfaceAddresses.has(host);
  }
}

/** Addresses that always mean this host. IPv4-mapped IPv6 addresses match the IPv4 rules. */
const THIS_HOST = new net.BlockList();
THIS_HOST.addSubnet('127.0.0.0', 8, 'ipv4');
THIS_HOST.addAddress('0.0.0.0', 'ipv4');
THIS_HOST.addAddress('::1', 'ipv6');
THIS_HOST.addAddress('::', 'ipv6');

/**
 * A host as the resolver will understand it: lower case, no trailing dot, IPv4 shorthand
 * (127.1, 0x7f.1, 2130706433) and IPv6 spelled the WHATWG URL way, without brackets.
 */
function canonicalHost(host: string): string {
  let h = host.toLowerCase();
  try {
    h = new URL(`http://${h.includes(':') ? `[${h}]` : h}/`).hostname;
  } catch {
    // not a URL host (a zone id, stray characters): compare it as given
  }
  if (h.startsWith('[') && h.endsWith(']')) h = h.slice(1, -1);
  return h.endsWith('.') ? h.slice(0, -1) : h;
}

function ownInterfaceAddresses(): Set<string> {
  const out = new Set<string>();
  try {
    for (const list of Object.values(networkInterfaces())) {
      for (const a of list ?? []) out.add(canonicalHost(a.address));
    }
  } catch {
    // no interface list (a restricted sandbox): the fixed addresses above still apply
  }
  return out;
}
