// Corking a socket for the rest of this tick, so that a head and the body bytes that follow it in
// the same tick leave in one write. The sockets corked in one tick are uncorked by one
// process.nextTick callback: a tick object per request (per head written) was garbage on every
// request of the HTTP/1 paths, and a busy proxy writes many heads per tick.
import type net from 'node:net';

/** Sockets corked in this tick, in order. */
const corked: net.Socket[] = [];

/** Corks `socket` until the next tick (when its pending writes leave together). */
export function corkForTick(socket: net.Socket): void {
  socket.cork();
  if (corked.push(socket) === 1) process.nextTick(uncorkAll);
}

function uncorkAll(): void {
  const batch = corked.splice(0, corked.length); // one array per tick, not per socket
  let failed: { err: unknown } | null = null;
  for (const socket of batch) {
    try {
      socket.uncork();
    } catch (err) {
      failed ??= { err }; // the others are uncorked all the same; the first error is thrown after
    }
  }
  // Corked while these were uncorked (a write's callback): their own tick.
  if (corked.length > 0) process.nextTick(uncorkAll);
  if (failed !== null) throw failed.err;
}
