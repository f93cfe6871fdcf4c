// Reading an in-process proxy (startProxy, or MeshWorld.proxy) from a test: a listener's port and
// a metric's value, straight from its runtime.
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
