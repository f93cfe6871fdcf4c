// Policy.WatchInbound streams of one workload share one built policy a change (watch-streams.ts
// share keys): anyone who reaches the gRPC port may open thousands of them, and each change built
// the workload's policy once per stream in one synchronous pass. Seen here through the one side
// effect of a build, the warning about a Server whose port name does not resolve: once per
// stream before, once for all of them now.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import { loadPolicyApi } from '../../src/api/load.ts';
import { localPolicyComponent } from '../../src/control/policy/component.ts';
import { writePolicyFile } from '../../src/control/policy/state-files.ts';
import { parsePolicyResource } from '../../src/control/resources.ts';
import { createLogger, silentLogger } from '../../src/core/log.ts';
import { startStateControlPlane } from '../helpers/state-control-plane.ts';

const STREAMS = 20;

test('WatchInbound streams of one workload build its policy once a change between them', async (t) => {
  const lines: string[] = [];
  const log = createLogger({ level: 'warn', write: (line) => lines.push(line), rateLimit: null });
  const { plane, root } = await startStateControlPlane(t, (dir) => ({
    log: silentLogger,
    components: [localPolicyComponent(dir, log)],
  }));
  const client = new (loadPolicyApi().Policy)(plane.grpc, grpc.credentials.createInsecure());
  t.after(() => client.close());
  const server = parsePolicyResource(
    {
      apiVersion: 'policy.trellis.dev/v1alpha1',
      kind: 'Server',
      metadata: { name: 'web-http', namespace: 'default' },
      spec: { workload: 'web', port: 'no-such-name', protocol: 'http1' },
    },
    'test',
  );
  const firsts: Promise<void>[] = [];
  const calls: grpc.ClientReadableStream<unknown>[] = [];
  for (let i = 0; i < STREAMS; i++) {
    const call = client.WatchInbound({ namespace: 'default', workload: 'web', labels: {}, namedPorts: {} });
    call.on('error', () => {});
    calls.push(call);
    firsts.push(new Promise((resolve) => call.once('data', () => resolve())));
  }
  t.after(() => calls.forEach((c) => c.cancel()));
  await Promise.all(firsts);
  await writePolicyFile(root, server);
  // The Server comes with the folder's next scan: a change, which each stream hears at once.
  const warned = () => lines.filter((l) => l.includes('servers skipped for a workload')).length;
  const deadline = Date.now() + 10_000;
  while (warned() === 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50));
  await new Promise((resolve) => setTimeout(resolve, 200));
  const skipped = lines.filter((l) => l.includes('servers skipped for a workload'));
  assert.equal(skipped.length, 1, `${skipped.length} builds for ${STREAMS} streams of one workload`);
});
