// The bound on the control plane's open watch streams (src/control/watch-limits.ts), with a real
// control plane and gRPC clients on loopback: past the maximum a new Destination.Watch or
// Policy.WatchInbound is refused with RESOURCE_EXHAUSTED and counted, the open ones are untouched,
// and a stream that ends makes room again; a message larger than any method takes is refused
// before it is decoded.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import { loadDestinationApi, loadPolicyApi } from '../../src/api/load.ts';
import { localPolicyComponent } from '../../src/control/policy/component.ts';
import { silentLogger } from '../../src/core/log.ts';
import { startStateControlPlane } from '../helpers/state-control-plane.ts';

const MAX = 3;

async function startPlane(t: { after(fn: () => unknown): void }) {
  const { plane } = await startStateControlPlane(t, (root) => ({
    log: silentLogger,
    components: [localPolicyComponent(root, silentLogger)],
    maxWatchStreams: MAX,
  }));
  return plane;
}

interface Watch {
  /** The status the stream ended with, or 'open' when it is still open after `ms`. */
  outcome(ms: number): Promise<grpc.StatusObject | 'open'>;
  cancel(): void;
}

function watching(call: grpc.ClientReadableStream<unknown>): Watch {
  call.on('data', () => {});
  call.on('error', () => {}); // the status is what counts
  const status = new Promise<grpc.StatusObject>((resolve) => call.on('status', resolve));
  return {
    outcome: (ms) =>
      Promise.race([status, new Promise<'open'>((resolve) => setTimeout(() => resolve('open'), ms))]),
    cancel: () => call.cancel(),
  };
}

async function refusedCount(http: string, api: string): Promise<number> {
  const text = await (await fetch(`http://${http}/metrics`)).text();
  const line = text
    .split('\n')
    .find((l) => l.startsWith(`trellis_control_watch_streams_refused_total{api="${api}"}`));
  return line === undefined ? 0 : Number(line.slice(line.lastIndexOf(' ') + 1));
}

test('Destination.Watch: past the maximum a new stream is refused with RESOURCE_EXHAUSTED; ending one makes room', async (t) => {
  const plane = await startPlane(t);
  const client = new (loadDestinationApi().Destination)(plane.grpc, grpc.credentials.createInsecure());
  t.after(() => client.close());
  const watches = Array.from({ length: MAX }, (_, i) =>
    watching(client.Watch({ path: `web${i}.default:8080` })),
  );
  for (const w of watches) assert.equal(await w.outcome(300), 'open');

  const over = await watching(client.Watch({ path: 'extra.default:8080' })).outcome(5000);
  assert.notEqual(over, 'open', 'a stream past the maximum was accepted');
  assert.equal((over as grpc.StatusObject).code, grpc.status.RESOURCE_EXHAUSTED);
  assert.match((over as grpc.StatusObject).details, /too many open destination watches \(at most 3\)/);
  assert.equal(await refusedCount(plane.http, 'destination'), 1);
  // The open ones were not touched.
  for (const w of watches) assert.equal(await w.outcome(50), 'open');

  watches[0]!.cancel();
  await new Promise((r) => setTimeout(r, 300));
  const again = watching(client.Watch({ path: 'again.default:8080' }));
  assert.equal(await again.outcome(500), 'open');
  for (const w of [...watches.slice(1), again]) w.cancel();
});

test('Policy.WatchInbound has its own bound; a message over the largest any method takes is refused', async (t) => {
  const plane = await startPlane(t);
  const client = new (loadPolicyApi().Policy)(plane.grpc, grpc.credentials.createInsecure());
  t.after(() => client.close());
  const watches = Array.from({ length: MAX }, (_, i) =>
    watching(client.WatchInbound({ namespace: 'shop', workload: `w${i}` })),
  );
  for (const w of watches) assert.equal(await w.outcome(300), 'open');
  const over = await watching(client.WatchInbound({ namespace: 'shop', workload: 'extra' })).outcome(5000);
  assert.notEqual(over, 'open');
  assert.equal((over as grpc.StatusObject).code, grpc.status.RESOURCE_EXHAUSTED);
  assert.equal(await refusedCount(plane.http, 'policy'), 1);
  assert.equal(await refusedCount(plane.http, 'destination'), 0);
  for (const w of watches) w.cancel();

  // 2 MiB of labels: grpc-js would take up to 4 MiB; the control plane takes 1 MiB and a little.
  const huge = watching(
    client.WatchInbound({ namespace: 'shop', workload: 'big', labels: { big: 'x'.repeat(2 << 20) } }),
  );
  const status = await huge.outcome(5000);
  assert.notEqual(status, 'open');
  assert.equal((status as grpc.StatusObject).code, grpc.status.RESOURCE_EXHAUSTED);
});
