// What the demo services share: command-line flags, listening with a ready line, and leaving
// cleanly. Each service prints one JSON line on stdout once it listens,
// {"event":"ready","listen":"127.0.0.1:N"}, so whoever starts it (trellis demo) learns its port.
// With --exit-on-stdin-close it exits when its stdin pipe closes: a demo that dies without
// cleaning up cannot leave its services behind.
import http from 'node:http';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';

export interface ServiceFlags {
  readonly host: string;
  readonly port: number;
  readonly exitOnStdinClose: boolean;
  /** Other `--name value` flags, by name. */
  readonly extra: ReadonlyMap<string, string>;
}

export function parseServiceFlags(argv: readonly string[]): ServiceFlags {
  let listen = '127.0.0.1:0';
  let exitOnStdinClose = false;
  const extra = new Map<string, string>();
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--exit-on-stdin-close') exitOnStdinClose = true;
    else if (arg === '--listen') listen = argv[++i] ?? listen;
    else if (arg.startsWith('--') && i + 1 < argv.length) extra.set(arg.slice(2), argv[++i]!);
    else throw new Error(`unexpected argument ${arg}`);
  }
  const colon = listen.lastIndexOf(':');
  return {
    host: listen.slice(0, colon) || '127.0.0.1',
    port: Number(listen.slice(colon + 1)),
    exitOnStdinClose,
    extra,
  };
}

/** Sends a JSON body. */
export function sendJson(res: http.ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

/** Listens, prints the ready line, and closes on SIGTERM/SIGINT (or stdin closing, if asked). */
export async function serve(name: string, flags: ServiceFlags, handler: http.RequestListener): Promise<void> {
  const server = http.createServer({ keepAliveTimeout: 30_000 }, handler);
  server.listen(flags.port, flags.host);
  await once(server, 'listening');
  const a = server.address() as AddressInfo;
  process.stdout.write(
    JSON.stringify({ event: 'ready', service: name, listen: `${a.address}:${a.port}` }) + '\n',
  );
  const stop = () => {
    server.close(() => process.exit(0));
    server.closeAllConnections();
    setTimeout(() => process.exit(0), 2000).unref();
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
  if (flags.exitOnStdinClose) {
    process.stdin.on('end', stop);
    process.stdin.on('error', stop);
    process.stdin.resume();
  }
}

/** Waits `ms` milliseconds. */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
