// One client address must not hold every watch stream of an API: with 10,000 Destination.Watch
// streams open from one caller, every proxy's new watch was refused (RESOURCE_EXHAUSTED), and a
// proxy that cannot watch a service cannot reach it. With the bound reached, a watch from another
// address takes the place of the oldest stream of the address holding the most; only an address
// that already holds the most is refused. A real control plane on loopback, dual-stack, so that
// the two clients have two addresses (::ffff:127.0.0.1 and ::1).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import { loadDestinationApi, loadPolicyApi } from '../../src/api/load.ts';
import { localPolicyComponent } from '../../src/control/policy/component.ts';
import { silentLogger } from '../../src/core/log.ts';
import { startStateControlPlane } from '../helpers/state-control-plane.ts';

const MAX = 3;

async function startPlane(t: { after(fn: () => unknown): void }) {
  const { plane, grpcPort } = await startStateControlPlane(t, (root) => ({
    grpcListen: '[::]:0',
    log: silentLogger,
    components: [localPolicyComponent(root, silentLogger)],
    maxWatchStreams: MAX,
  }));
  return { plane, port: grpcPort };
}

interface Watch {
  outcome(ms: number): Promise<grpc.StatusObject | 'open'>;
  cancel(): void;
}

function watching(call: grpc.ClientReadableStream<unknown>): Watch {
  call.on('data', () => {});
  call.on('error', () => {});
  const status = new Promise<grpc.StatusObject>((resolve) => call.on('status', resolve));
  return {
    outcome: (ms) =>
      Promise.race([status, new Promise<'open'>((resolve) => setTimeout(() => resolve('open'), ms))]),
    cancel: () => call.cancel(),
  };
}

const code = (o: grpc.StatusObject | 'open'): grpc.status | 'open' => (o === 'open' ? o : o.code);

test('Destination.Watch: an address holding every stream does not keep another one out', async (t) => {
  const { port } = await startPlane(t);
  const Destination = loadDestinationApi().Destination;
  const attacker = new Destination(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  const proxy = new Destination(`[::1]:${port}`, grpc.credentials.createInsecure());
  t.after(() => [attacker, proxy].forEach((c) => c.close()));
  const held = Array.from({ length: MAX }, (_, i) =>
    watching(attacker.Watch({ path: `junk${i}.default:80` })),
  );
  for (const w of held) assert.equal(await w.outcome(300), 'open');

  const mine = watching(proxy.Watch({ path: 'web.default:8080' }));
  assert.equal(await mine.outcome(500), 'open', "the other address's watch is served");
  assert.equal(
    code(await held[0]!.outcome(2000)),
    grpc.status.RESOURCE_EXHAUSTED,
    "the attacker's oldest made room",
  );
  for (const w of held.slice(1)) assert.equal(await w.outcome(50), 'open');
  const more = watching(attacker.Watch({ path: 'more.default:80' }));
  assert.equal(
    code(await more.outcome(2000)),
    grpc.status.RESOURCE_EXHAUSTED,
    'the address holding the most is refused',
  );
  for (const w of [...held, mine]) w.cancel();
});

test('Policy.WatchInbound: the same share', async (t) => {
  const { port } = await startPlane(t);
  const Policy = loadPolicyApi().Policy;
  const attacker = new Policy(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  const proxy = new Policy(`[::1]:${port}`, grpc.credentials.createInsecure());
  t.after(() => [attacker, proxy].forEach((c) => c.close()));
  const held = Array.from({ length: MAX }, (_, i) =>
    watching(attacker.WatchInbound({ namespace: 'shop', workload: `w${i}` })),
  );
  for (const w of held) assert.equal(await w.outcome(300), 'open');
  const mine = watching(proxy.WatchInbound({ namespace: 'shop', workload: 'web' }));
  assert.equal(await mine.outcome(500), 'open', "the other address's watch is served");
  assert.equal(code(await held[0]!.outcome(2000)), grpc.status.RESOURCE_EXHAUSTED);
  for (const w of [...held, mine]) w.cancel();
});
