// Captures the ClientHello that Node's own TLS client sends, for the detection and parser tests.
import net from 'node:net';
import tls from 'node:tls';

/** Starts a plain TCP server, lets Node's TLS client connect to it, returns the first record. */
export async function captureClientHello(options: tls.ConnectionOptions): Promise<Buffer> {
  const server = net.createServer();
  let client: tls.TLSSocket | undefined;
  try {
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as net.AddressInfo;
    const received = new Promise<Buffer>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('no ClientHello within 5 s')), 5000);
      server.once('connection', (socket) => {
        socket.on('error', () => {});
        let seen = Buffer.alloc(0);
        socket.on('data', (chunk: Buffer) => {
          seen = Buffer.concat([seen, chunk]);
          // Node sends its hello in a single record: wait for the whole of it.
          if (seen.length >= 5 && seen.length >= 5 + seen.readUInt16BE(3)) {
            clearTimeout(timer);
            socket.destroy();
            resolve(seen.subarray(0, 5 + seen.readUInt16BE(3)));
          }
        });
      });
    });
    client = tls.connect({ host: '127.0.0.1', port, ...options });
    client.on('error', () => {});
    return await received;
  } finally {
    client?.destroy();
    await new Promise((resolve) => server.close(resolve));
  }
}
