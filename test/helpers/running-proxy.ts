// Reading an in-process proxy (startProxy, or MeshWorld.proxy) from a test: a listener's port and
// a metric's value, straight from its runtime, and one raw request through its outbound listener.
import net from 'node:net';
import type { RunningProxy } from '../../src/proxy/proxy.ts';

/** The bound port of a listener (inbound, outbound, admin, destination-N). */
export const portOf = (p: RunningProxy, name: string): number => Number(p.addresses[name]!.split(':').pop());

/** The sum of a metric's series whose labels include every given one. */
export function metric(p: RunningProxy, name: string, labels: Record<string, string> = {}): number {
  let sum = 0;
  for (const line of p.runtime.metrics.render().split('\n')) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    if (!Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`))) continue;
    sum += Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return sum;
}

/**
 * One GET on its own connection through the outbound listener at `port` to 127.0.0.1:`upstream`
 * (absolute-form); the raw answer, once `complete` holds for what came (or the proxy closed, or 5 s).
 */
export function askThrough(
  port: number,
  upstream: number,
  path: string,
  complete: (got: string) => boolean,
): Promise<string> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1', () =>
      s.write(`GET http://127.0.0.1:${upstream}${path} HTTP/1.1\r\nHost: 127.0.0.1:${upstream}\r\n\r\n`),
    );
    let got = '';
    s.setEncoding('latin1');
    s.on('data', (d: string) => {
      got += d;
      if (complete(got)) s.end();
    });
    s.on('close', () => resolve(got));
    s.on('error', () => {});
    s.setTimeout(5000, () => s.destroy());
  });
}
