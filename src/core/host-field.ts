// Whether a request's Host field names this host in a way no other site's web page can: the
// defence against DNS rebinding, where a page the user opened points its own name at 127.0.0.1
// and then reads a loopback-only HTTP API as its own origin. The page cannot choose the Host it
// sends: it is the page's own name. Used by the control plane's HTTP API on loopback
// (src/control/host-guard.ts) and the proxy admin's loopback-only tap (src/proxy/admin/tap-route.ts).
import { isIP } from 'node:net';

/** The host of a Host field value ("name:port", "[v6]:port"), lower case, without a trailing dot. */
function hostOf(field: string): string {
  let host = field.trim().toLowerCase();
  if (host.startsWith('[')) {
    const end = host.indexOf(']');
    host = end === -1 ? host : host.slice(1, end);
  } else {
    const colon = host.lastIndexOf(':');
    if (colon !== -1 && host.indexOf(':') === colon) host = host.slice(0, colon);
  }
  return host.endsWith('.') ? host.slice(0, -1) : host;
}

/**
 * Whether a request's Host field names this host in a way no other site's page can: `localhost`
 * (or a name under `.localhost`, which resolvers keep on loopback) or an IP address literal.
 */
export function hostNamesThisHost(field: string | null | undefined): boolean {
  if (field === undefined || field === null) return false;
  const host = hostOf(field);
  return host === 'localhost' || host.endsWith('.localhost') || isIP(host) !== 0;
}
