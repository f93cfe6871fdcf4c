// X-Forwarded-For on inbound requests (mesh.appendForwardedFor, on by default): the proxy appends
// the address the request came from, on every inbound path (HTTP/1, HTTP/2, and HTTP/1 over the
// mesh), as a reverse proxy does (nginx's $proxy_add_x_forwarded_for, haproxy's forwardfor).
//
// Why: the app's connection comes from its own proxy (127.0.0.1 in explicit mode, the pod's address
// in transparent mode), so without it the app cannot learn its caller's address at all, and an app
// that trusts the list from a loopback proxy (Express `trust proxy: 'loopback'`, nginx real_ip)
// would take whatever a remote client wrote there. With it the last entry is always the address
// this proxy saw; what came before it is the client's claim. Every spelling an app may read as the
// field (case, '_' for '-', as for the identity header: policy/client-id-field.ts) is folded into
// the one field the proxy writes, so a client cannot slip in a second list.
import { readsAs } from '../policy/client-id-field.ts';

export const FORWARDED_FOR = 'x-forwarded-for';

/** Whether a field name is X-Forwarded-For as an app may read it. */
export function isForwardedForField(name: string): boolean {
  return name.length === 15 && readsAs(name, FORWARDED_FOR);
}

/** The address as X-Forwarded-For carries it: an IPv4-mapped IPv6 address as plain IPv4. */
export function forwardedAddress(remoteAddress: string | undefined): string {
  if (remoteAddress === undefined || remoteAddress === '') return 'unknown';
  return remoteAddress.startsWith('::ffff:') && remoteAddress.includes('.')
    ? remoteAddress.slice(7)
    : remoteAddress;
}

/** The list the client sent (null: none) with `address` appended. */
export function appendedForwardedFor(sent: string | null, address: string): string {
  return sent === null || sent === '' ? address : `${sent}, ${address}`;
}

/**
 * An HTTP/2 field list (name, value, ...): every X-Forwarded-For spelling removed, and one
 * `x-forwarded-for` with their values in order and `address` appended.
 */
export function forwardFieldsFor(fields: string[], address: string): void {
  let sent: string | null = null;
  for (let i = 0; i < fields.length; i += 2) {
    if (!isForwardedForField(fields[i]!)) continue;
    sent = sent === null ? fields[i + 1]! : `${sent}, ${fields[i + 1]!}`;
    fields.splice(i, 2);
    i -= 2;
  }
  fields.push(FORWARDED_FOR, appendedForwardedFor(sent, address));
}

/** As forwardFieldsFor, for a node:http2 header object (a repeated field is an array or joined). */
export function forwardHeadersFor(headers: Record<string, unknown>, address: string): void {
  let sent: string | null = null;
  for (const name of Object.keys(headers)) {
    if (!isForwardedForField(name)) continue;
    const v = headers[name];
    const value = Array.isArray(v) ? v.join(', ') : String(v);
    sent = sent === null ? value : `${sent}, ${value}`;
    delete headers[name];
  }
  headers[FORWARDED_FOR] = appendedForwardedFor(sent, address);
}
