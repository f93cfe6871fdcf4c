// The syntax of what authorization policy names: SPIFFE identity patterns, client networks in
// CIDR form, HTTP route paths, and the default policies. The control plane validates resources with these parsers
// (src/control/policy/schema.ts) and the proxy compiles policy with them
// (src/proxy/policy/match.ts), so a pattern the control plane accepts is exactly one the proxy can
// match. Pure: no I/O, no state; tested with fast-check properties
// (test/unit/policy-match.test.ts).
import { isIPv4, isIPv6 } from 'node:net';

/** A proxy's default inbound policy, for ports no Server selects (`trellis proxy --default-policy`). */
export type DefaultPolicy = 'all-unauthenticated' | 'all-authenticated' | 'deny' | 'audit';
export const DEFAULT_POLICIES: readonly DefaultPolicy[] = [
  'all-unauthenticated',
  'all-authenticated',
  'deny',
  'audit',
];

/**
 * Why `pattern` is not a valid identity pattern, or null when it is: a lone "*", or a
 * "spiffe://" URI whose path segments are non-empty and may contain "*" (any run of characters
 * within that one segment, never a "/"). Used by the control plane's resource validation.
 */
export function identityPatternProblem(pattern: string): string | null {
  if (pattern === '*') return null;
  if (!pattern.startsWith('spiffe://')) return 'expected a SPIFFE ID ("spiffe://...") or "*"';
  const rest = pattern.slice('spiffe://'.length);
  const segments = rest.split('/');
  if (segments.length < 2) return 'expected a trust domain and a path (spiffe://DOMAIN/ns/NS/sa/SA)';
  if (segments.some((s) => s === '')) return 'has an empty path segment';
  if (/[\s?#]/.test(rest)) return 'must not contain spaces, "?" or "#"';
  return null;
}

/** A CIDR block, parsed: the address family, the network address and the prefix length. */
export interface Cidr {
  readonly family: 'ipv4' | 'ipv6';
  readonly address: string;
  readonly prefix: number;
}

/** Parses "ADDRESS/PREFIX" (or a bare address, meaning /32 or /128); null when it is not one. */
export function parseCidr(text: string): Cidr | null {
  const slash = text.indexOf('/');
  const address = slash === -1 ? text : text.slice(0, slash);
  const family = isIPv4(address) ? 'ipv4' : isIPv6(address) && !address.includes('%') ? 'ipv6' : null;
  if (family === null) return null;
  const max = family === 'ipv4' ? 32 : 128;
  if (slash === -1) return { family, address, prefix: max };
  const prefixText = text.slice(slash + 1);
  if (!/^(0|[1-9][0-9]{0,2})$/.test(prefixText)) return null;
  const prefix = Number(prefixText);
  return prefix <= max ? { family, address, prefix } : null;
}

/** Why `path` is not a valid route path, or null: it must start with "/"; "*" only at the end. */
export function routePathProblem(path: string): string | null {
  if (!path.startsWith('/')) return 'expected a path starting with "/"';
  if (path.slice(0, -1).includes('*')) return '"*" is only allowed at the end (a prefix)';
  if (/[\s?#]/.test(path)) return 'must not contain spaces, "?" or "#"';
  return null;
}
