// The logical level: the service and port a request or connection is for. The connection's own
// destination wins (a destination listener's target, SO_ORIGINAL_DST, a CONNECT tunnel's);
// without one, outbound, the request names it (HTTP/1: the absolute-form URI, else Host; HTTP/2:
// :authority), as a host to balance over (outbound/discovery.ts) or an address, and never one of
// the proxy's own listeners (transport/loop-guard.ts). Inbound uses the same HTTP/1 target
// parsing but goes only to its connection's destination, the app. Built once per direction
// (outbound/stack.ts, inbound/stack.ts); each call allocates at most the route it returns.
import type { Target } from '../../core/target.ts';
import { parseAuthority, targetKey } from '../../core/target.ts';
import type { ProxyErrorReason } from '../errors.ts';
import type { H1Route } from '../http/h1-client.ts';
import type { MessageHead } from '../http/h1-parser.ts';
import type { LoopGuard } from '../transport/loop-guard.ts';

export class LogicalTargets {
  /** Outbound: requests may name their destination, never the proxy itself; null: inbound. */
  private readonly loops: LoopGuard | null;

  /** `loops`: outbound; null: inbound, where only the connection's own destination counts. */
  constructor(loops: LoopGuard | null) {
    this.loops = loops;
  }

  /**
   * HTTP/1: the connection's destination wins; else (outbound only) the absolute-form URI; else
   * Host. Inbound goes only to its own app: a connection without one has nowhere to go.
   */
  request(head: MessageHead, connTarget: Target | null): H1Route | ProxyErrorReason {
    let path = head.target;
    let host: string | null = null;
    let authority = head.host;
    const t = head.target;
    if (t.charCodeAt(0) !== 0x2f && t !== '*') {
      // absolute-form: scheme "://" authority path-abempty [ "?" query ]
      const sep = t.indexOf('://');
      const scheme = t.slice(0, sep).toLowerCase();
      if (scheme !== 'http') return 'bad-request';
      const rest = t.slice(sep + 3);
      let end = rest.length;
      for (let i = 0; i < rest.length; i++) {
        const c = rest.charCodeAt(i);
        if (c === 0x2f || c === 0x3f || c === 0x23) {
          end = i;
          break;
        }
      }
      authority = rest.slice(0, end);
      if (authority.includes('@')) return 'bad-request';
      path = rest.slice(end);
      if (path === '' || path.charCodeAt(0) === 0x3f) path = '/' + path;
      host = authority;
    }
    let target = connTarget;
    if (target === null) {
      const loops = this.loops;
      if (loops === null || authority === null || authority === '') return 'unknown-destination';
      target = parseAuthority(authority, 80);
      if (target === null) return 'bad-request';
      if (loops.isLoop(target)) return 'loop-detected';
    }
    if (host === null && head.host === null) host = targetKey(target);
    return { target, path, host };
  }

  /** HTTP/2: the connection's destination wins; else (outbound only) :authority. */
  authority(authority: string | undefined, connTarget: Target | null): Target | null {
    if (connTarget !== null) return connTarget;
    const loops = this.loops;
    if (loops === null || authority === undefined || authority === '') return null;
    const t = parseAuthority(authority, 80);
    if (t === null || loops.isLoop(t)) return null;
    return t;
  }
}
