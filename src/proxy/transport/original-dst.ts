// The original destination of a connection that iptables REDIRECTed to one of the proxy's
// listeners (transparent mode, see `trellis init`). The kernel keeps it in conntrack and hands it
// out through getsockopt(SO_ORIGINAL_DST) for IPv4 and getsockopt(IP6T_SO_ORIGINAL_DST) for IPv6.
//
// Why FFI: Node exposes no getsockopt() on sockets, and a native addon would need a compiler at
// install time. koffi (prebuilt binaries) lets us call libc's getsockopt on the socket's fd.
// libc is loaded once, lazily, on the first call; if it cannot be loaded every call returns null.
import { createRequire } from 'node:module';
import net from 'node:net';
import os from 'node:os';

const SOL_IP = 0;
const SOL_IPV6 = 41;
/** linux/netfilter_ipv4.h SO_ORIGINAL_DST and linux/netfilter_ipv6/ip6_tables.h IP6T_SO_ORIGINAL_DST. */
const SO_ORIGINAL_DST = 80;
const IP6T_SO_ORIGINAL_DST = 80;
const AF_INET = 2;
const AF_INET6 = 10;
const SOCKADDR_IN_SIZE = 16;
const SOCKADDR_IN6_SIZE = 28;

type GetSockOpt = (fd: number, level: number, name: number, value: Buffer, length: Uint32Array) => number;

/** undefined: not tried yet; null: libc could not be loaded (not Linux, koffi missing, ...). */
let getsockoptFn: GetSockOpt | null | undefined;

function loadGetsockopt(): GetSockOpt | null {
  if (getsockoptFn !== undefined) return getsockoptFn;
  getsockoptFn = null;
  if (process.platform !== 'linux') return null;
  try {
    const koffi = createRequire(import.meta.url)('koffi') as typeof import('koffi');
    const libc = koffi.load('libc.so.6');
    getsockoptFn = libc.func(
      'int getsockopt(int fd, int level, int optname, void *optval, uint32_t *optlen)',
    ) as GetSockOpt;
  } catch {
    getsockoptFn = null;
  }
  return getsockoptFn;
}

/** The OS file descriptor behind a net.Socket, or -1 (e.g. not connected, or already closed). */
function socketFd(socket: net.Socket): number {
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  const fd = (socket as any)._handle?.fd;
  return typeof fd === 'number' && Number.isInteger(fd) && fd >= 0 ? fd : -1;
}

/** Decodes a struct sockaddr_in or sockaddr_in6 (family in host order, port in network order). */
export function decodeSockaddr(buf: Buffer, length: number): { host: string; port: number } | null {
  if (length < 2) return null;
  const family = os.endianness() === 'LE' ? buf.readUInt16LE(0) : buf.readUInt16BE(0);
  if (family === AF_INET && length >= 8) {
    return { host: `${buf[4]}.${buf[5]}.${buf[6]}.${buf[7]}`, port: buf.readUInt16BE(2) };
  }
  if (family === AF_INET6 && length >= 24) {
    const groups: string[] = [];
    for (let i = 0; i < 8; i++) groups.push(buf.readUInt16BE(8 + i * 2).toString(16));
    return { host: canonicalAddress(groups.join(':')), port: buf.readUInt16BE(2) };
  }
  return null;
}

/** One spelling per address: IPv6 compressed, IPv4-mapped IPv6 as dotted IPv4. */
function canonicalAddress(address: string): string {
  if (!net.isIPv6(address)) return address;
  let normalized = address;
  try {
    normalized = new net.SocketAddress({ address, family: 'ipv6' }).address;
  } catch {
    // keep the spelling we were given
  }
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(normalized);
  return mapped ? mapped[1]! : normalized;
}

/**
 * Where the client meant to connect before iptables REDIRECTed the connection here, or null when
 * the connection was not redirected (or on any error: this never throws).
 */
export function getOriginalDst(socket: net.Socket): { host: string; port: number } | null {
  try {
    const getsockopt = loadGetsockopt();
    const fd = socketFd(socket);
    const localAddress = socket.localAddress;
    const localPort = socket.localPort;
    if (!getsockopt || fd < 0 || localAddress === undefined || localPort === undefined) return null;
    const local = canonicalAddress(localAddress);
    // An IPv4 connection accepted on a dual-stack (::) listener is an AF_INET6 socket, but its
    // conntrack entry is IPv4: the IPv4 option answers for it (the kernel looks at the v4 addresses).
    const ipv4 = net.isIPv4(local);
    const value = Buffer.alloc(ipv4 ? SOCKADDR_IN_SIZE : SOCKADDR_IN6_SIZE);
    const length = new Uint32Array([value.length]);
    const rc = ipv4
      ? getsockopt(fd, SOL_IP, SO_ORIGINAL_DST, value, length)
      : getsockopt(fd, SOL_IPV6, IP6T_SO_ORIGINAL_DST, value, length);
    // rc -1: ENOENT (no conntrack entry: not redirected), ENOPROTOOPT (no netfilter), ...
    if (rc !== 0) return null;
    const original = decodeSockaddr(value, length[0]!);
    if (!original) return null;
    // With conntrack active, a connection that was not redirected still has an entry, whose
    // original destination is simply the address the socket is bound to.
    if (original.port === localPort && original.host === local) return null;
    return original;
  } catch {
    return null;
  }
}
