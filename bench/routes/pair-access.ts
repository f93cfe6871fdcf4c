// What the routes benchmark needs of a trellis pair (bench/two-hop/contenders.ts startTrellisPair)
// beyond what the two-hop table uses: the control plane's state folder (where routes are
// written), the client-side proxy's admin listener (whose metrics show routing and retries), a
// counter read from it, the wait until a route is in force, and the check that the load takes two
// hops with mTLS (also bench/tracing.ts).
import { parsePrometheusText, sumSamples } from '../../src/core/prom-parse.ts';
import { checkAnswers } from '../measure.ts';
import { tail } from '../processes.ts';
import { readyField } from '../targets.ts';
import { fetchMetrics, trellisMtls } from '../two-hop/mtls-check.ts';
import type { Pair } from '../two-hop/contenders.ts';

/** The `--state DIR` the pair's `trellis up` was started with. */
export function stateDirOf(pair: Pair): string {
  const args = pair.controlPlane?.child.spawnargs ?? [];
  const i = args.indexOf('--state');
  const dir = i === -1 ? undefined : args[i + 1];
  if (dir === undefined) throw new Error(`${pair.name}: cannot find the control plane's --state folder`);
  return dir;
}

/** The client-side proxy's admin listener (HOST:PORT), from its {"event":"ready"} line. */
export function clientAdminOf(pair: Pair): string {
  const client = pair.proxies.find((p) => p.role === 'client')?.process;
  const out = client?.output() ?? '';
  for (const line of out.split('\n')) {
    const admin = readyField(line.trim(), 'admin');
    if (admin !== undefined) return admin;
  }
  throw new Error(`${pair.name}: the client-side proxy printed no admin address; output: ${tail(out)}`);
}

/** The sum of a counter's series matching `labels` on a proxy's /metrics. */
export async function counter(
  admin: string,
  name: string,
  labels: Readonly<Record<string, string>> = {},
): Promise<number> {
  return sumSamples(parsePrometheusText(await fetchMetrics(admin)), name, labels);
}

/**
 * Sends GET / through the pair until `inForce` says the route applies (bounded by `timeoutMs`);
 * fails loudly when it never does: numbers measured without the route would be meaningless.
 */
export async function waitForRoute(
  pair: Pair,
  what: string,
  inForce: () => Promise<boolean>,
  timeoutMs: number,
  sendOne: () => Promise<unknown> = () => checkAnswers(pair),
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = '';
  for (;;) {
    try {
      await sendOne();
      if (await inForce()) return;
      last = 'the route is not in force yet';
    } catch (err) {
      last = (err as Error).message;
    }
    if (Date.now() > deadline) {
      throw new Error(`${pair.name}: ${what} not in force after ${timeoutMs} ms (${last})`);
    }
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** Sends 20 requests through the pair; throws unless the server-side proxy shows them over mTLS. */
export async function checkTwoHopsMtls(name: string, pair: Pair): Promise<void> {
  for (let i = 0; i < 20; i++) await checkAnswers(pair);
  const m = trellisMtls(await fetchMetrics(pair.serverAdmin!));
  if (m.inboundRequests === 0 || m.verified !== true) {
    throw new Error(`${name}: the load does not take two hops with mTLS (${m.summary})`);
  }
}
