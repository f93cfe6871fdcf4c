// The bystander: a TCP server standing for "anything else a proxy can reach" (another service,
// the control plane's API, another proxy's admin). Requests may name it; only the outbound
// listeners may ever connect to it. It records the first bytes of every connection (their tag
// names the input that got through), answers 403 (so that a proxy is not kept waiting) and
// hangs up.
import net from 'node:net';

export interface Bystander {
  readonly port: number;
  /** A connection arrived: its first bytes and the port it came from (still connected). */
  onHit: (first: Buffer, fromPort: number) => void;
  hits(): number;
  close(): Promise<void>;
}

const ANSWER = 'HTTP/1.1 403 Forbidden\r\ncontent-length: 9\r\nconnection: close\r\n\r\nbystander';

export async function startBystander(port = 0): Promise<Bystander> {
  let hits = 0;
  const b: Bystander = { port: 0, onHit: () => {}, hits: () => hits, close: async () => {} };
  const server = net.createServer((socket) => {
    hits++;
    socket.on('error', () => {});
    let first = Buffer.alloc(0);
    let reported = false;
    const report = () => {
      if (reported) return;
      reported = true;
      clearTimeout(timer);
      b.onHit(first, socket.remotePort ?? 0);
      if (first.length > 0) socket.end(ANSWER);
      else socket.end();
      setTimeout(() => socket.destroy(), 1000).unref();
    };
    // Long enough for a request head to arrive, short enough not to hold the proxy up.
    let timer = setTimeout(report, 100);
    socket.on('data', (d: Buffer) => {
      first = Buffer.concat([first, d]);
      clearTimeout(timer);
      timer = setTimeout(report, first.length >= 4096 ? 0 : 10);
    });
    socket.on('end', report);
  });
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  return Object.assign(b, {
    port: (server.address() as net.AddressInfo).port,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  });
}
