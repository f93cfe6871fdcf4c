// The pure pieces of authorization matching: SPIFFE identity patterns, client networks in CIDR
// form, and HTTP routes. No I/O and no state, so each is tested with fast-check properties
// (test/unit/policy-match.test.ts). Patterns are parsed by src/core/policy-syntax.ts, the parsers
// the control plane validates resources with, so a pattern the control plane accepts is exactly
// one the proxy can match.
import { BlockList, isIPv4, isIPv6 } from 'node:net';
import { parseCidr } from '../../core/policy-syntax.ts';
import type { HttpRequestFacts } from './types.ts';

/** A compiled identity pattern: call it with the peer's identity. */
export type IdentityMatcher = (identity: string) => boolean;

/**
 * Compiles an identity pattern. A lone "*" matches any identity; otherwise "*" matches any run of
 * characters other than "/" and everything else matches itself. Patterns are compiled once per
 * policy, so the data path only runs a regular expression.
 */
export function compileIdentityPattern(pattern: string): IdentityMatcher {
  if (pattern === '*') return () => true;
  if (!pattern.includes('*')) return (identity) => identity === pattern;
  const source = pattern
    .split('*')
    .map((part) => part.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'))
    .join('[^/]*');
  const regex = new RegExp(`^${source}$`);
  return (identity) => regex.test(identity);
}

/**
 * The address the proxy should match networks against: an IPv4-mapped IPv6 address
 * ("::ffff:10.0.0.1", what a dual-stack listener reports for IPv4 clients) becomes its IPv4
 * address, and an IPv6 zone ("fe80::1%eth0") is dropped. Null when `ip` is not an IP address.
 */
export function normalizePeerIp(ip: string): { family: 'ipv4' | 'ipv6'; address: string } | null {
  if (isIPv4(ip)) return { family: 'ipv4', address: ip };
  const unzoned = ip.includes('%') ? ip.slice(0, ip.indexOf('%')) : ip;
  if (!isIPv6(unzoned)) return null;
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(unzoned);
  if (mapped !== null && isIPv4(mapped[1] ?? '')) return { family: 'ipv4', address: mapped[1] as string };
  return { family: 'ipv6', address: unzoned };
}

/** A compiled set of networks: call it with the peer's IP address. */
export type NetworkMatcher = (ip: string) => boolean;

/**
 * Compiles CIDR blocks into one net.BlockList. Blocks that do not parse are skipped (the control
 * plane validates them; the proxy never throws on what it was sent) and returned in `invalid`.
 */
export function compileNetworks(cidrs: readonly string[]): { matches: NetworkMatcher; invalid: string[] } {
  const invalid: string[] = [];
  if (cidrs.length === 0) return { matches: () => false, invalid };
  const list = new BlockList();
  let added = 0;
  for (const text of cidrs) {
    const cidr = parseCidr(text);
    if (cidr === null) {
      invalid.push(text);
      continue;
    }
    list.addSubnet(cidr.address, cidr.prefix, cidr.family);
    added++;
  }
  if (added === 0) return { matches: () => false, invalid };
  return {
    matches: (ip) => {
      const peer = normalizePeerIp(ip);
      if (peer === null) return false;
      try {
        return list.check(peer.address, peer.family);
      } catch {
        return false;
      }
    },
    invalid,
  };
}

/** An HTTP route as the policy gives it: an exact path or a prefix ending in "*"; methods. */
export interface RouteSpec {
  readonly path: string;
  readonly methods: readonly string[];
}

/**
 * Whether a request matches a route: the path equals the route's path, or starts with what comes
 * before a trailing "*"; and the method is one of the route's (compared case-sensitively, as HTTP
 * methods are; the policy's methods are upper-case), or the route names none.
 */
export function routeMatches(route: RouteSpec, request: HttpRequestFacts): boolean {
  const path = route.path;
  const pathOk = path.endsWith('*') ? request.path.startsWith(path.slice(0, -1)) : request.path === path;
  if (!pathOk) return false;
  return route.methods.length === 0 || route.methods.includes(request.method);
}

/**
 * Whether a request path (without its query) has a "." or ".." segment, however it is spelled:
 * percent-encoded dots, segments separated by an encoded slash or a (encoded) backslash, or ended
 * by ";parameters". Applications and frameworks resolve such segments (some only after decoding),
 * so a route checked against the path as sent may not be the resource the app serves:
 * `/public/../admin` passes an allow rule for `/public/*`.
 */
export function hasDotSegment(path: string): boolean {
  if (!path.includes('.') && !path.includes('%')) return false;
  const spelled = path.replace(/%2e/gi, '.').replace(/%2f|%5c|\\/gi, '/');
  for (const segment of spelled.split('/')) {
    const name = segment.includes(';') ? segment.slice(0, segment.indexOf(';')) : segment;
    if (name === '.' || name === '..') return true;
  }
  return false;
}

/**
 * The path an app that resolves dot-segments would serve for `path`: the spellings hasDotSegment
 * knows turned into "/" and ".", then RFC 3986 5.2.4 remove_dot_segments; with `mergeSlashes`,
 * empty segments are dropped first, as many servers do before resolving (nginx's merge_slashes,
 * Go's path.Clean, Node's path.normalize), so "/public//../admin" is "/admin", not "/public/admin".
 * For policy only (the request keeps its path).
 */
export function resolveDotSegments(path: string, mergeSlashes = false): string {
  const spelled = path.replace(/%2e/gi, '.').replace(/%2f|%5c|\\/gi, '/');
  const out: string[] = [];
  const segments = spelled.split('/');
  for (let i = 1; i < segments.length; i++) {
    const segment = segments[i]!;
    if (mergeSlashes && segment === '' && i < segments.length - 1) continue;
    const name = segment.includes(';') ? segment.slice(0, segment.indexOf(';')) : segment;
    const last = i === segments.length - 1;
    if (name === '.' || name === '..') {
      if (name === '..') out.pop();
      if (last) out.push(''); // "/a/b/.." is the directory "/a/"
    } else out.push(segment);
  }
  return '/' + out.join('/');
}
