// The baseline of the opaque-TCP scenario: the least a Node process can do to relay TCP, a
// net.Server that pipes each connection to the target and back, nothing else. Trellis's opaque
// forwarding is compared with this (target: >= 0.8x its throughput).
//
// Usage: node bench/tcp-pipe.ts --target 127.0.0.1:PORT [--listen 127.0.0.1:0]
// Prints {"event":"ready","listen":"127.0.0.1:N"} on stdout when it accepts connections.
import { connect, createServer, type Socket } from 'node:net';
import { parseArgs } from 'node:util';

function splitHostPort(s: string): { host: string; port: number } {
  const i = s.lastIndexOf(':');
  return { host: s.slice(0, i).replace(/^\[|\]$/g, ''), port: Number(s.slice(i + 1)) };
}

function relay(client: Socket, target: { host: string; port: number }): void {
  const upstream = connect(target);
  client.setNoDelay(true);
  upstream.setNoDelay(true);
  client.pipe(upstream);
  upstream.pipe(client);
  const close = (): void => {
    client.destroy();
    upstream.destroy();
  };
  client.once('error', close);
  upstream.once('error', close);
  client.once('close', close);
  upstream.once('close', close);
}

function main(): void {
  const { values } = parseArgs({
    options: { target: { type: 'string' }, listen: { type: 'string', default: '127.0.0.1:0' } },
  });
  if (!values.target) {
    process.stderr.write('usage: node bench/tcp-pipe.ts --target HOST:PORT [--listen HOST:PORT]\n');
    process.exitCode = 2;
    return;
  }
  const target = splitHostPort(values.target);
  const listen = splitHostPort(values.listen);
  const server = createServer({ noDelay: true }, (client) => relay(client, target));
  server.listen(listen.port, listen.host, () => {
    const addr = server.address();
    const where = typeof addr === 'object' && addr ? `${addr.address}:${addr.port}` : String(addr);
    process.stdout.write(JSON.stringify({ event: 'ready', listen: where }) + '\n');
  });
  const shutdown = (): void => {
    server.close();
    process.exit(0);
  };
  process.on('SIGTERM', shutdown);
  process.on('SIGINT', shutdown);
}

main();
