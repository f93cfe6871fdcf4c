// Which process holds the other end of a loopback TCP connection: /proc/net/tcp{,6} gives the
// socket's inode from its addresses, /proc/PID/fd shows which of the candidate processes has it
// open. The bystander uses it to say which proxy connected to it (the open proxy's culprit).
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';

function inodeOf(localPort: number, remotePort: number): string | null {
  const hex = (port: number) => port.toString(16).toUpperCase().padStart(4, '0');
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text: string;
    try {
      text = readFileSync(table, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f.length < 10) continue;
      if (f[1]!.endsWith(`:${hex(localPort)}`) && f[2]!.endsWith(`:${hex(remotePort)}`)) return f[9]!;
    }
  }
  return null;
}

/** The pid among `pids` whose socket has local port `localPort` connected to `remotePort`. */
export function socketOwner(localPort: number, remotePort: number, pids: readonly number[]): number | null {
  const inode = inodeOf(localPort, remotePort);
  if (inode === null) return null;
  const want = `socket:[${inode}]`;
  for (const pid of pids) {
    let fds: string[];
    try {
      fds = readdirSync(`/proc/${pid}/fd`);
    } catch {
      continue;
    }
    for (const fd of fds) {
      try {
        if (readlinkSync(`/proc/${pid}/fd/${fd}`) === want) return pid;
      } catch {
        // closed meanwhile
      }
    }
  }
  return null;
}
