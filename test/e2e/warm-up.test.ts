// The proxy's warm start, end to end with real processes on loopback: `trellis up`, one backend
// registered as a workload of service web, and `trellis proxy` with a static destination for it.
// Once the proxy says it is ready, the service's endpoints are already known: the control plane
// can go away before the first request, and that request still reaches the backend. The warm-up
// itself sends the app nothing.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import type net from 'node:net';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { once } from 'node:events';
import { writeServiceFile, writeWorkloadFile } from '../../src/control/discovery/local-state.ts';
import { startProxyProcess } from '../helpers/proxy-process.ts';
import { startUp } from '../helpers/cli.ts';
import { removeTempDir } from '../helpers/temp-dir.ts';

test('a static destination is resolved before the proxy is ready', { timeout: 60_000 }, async (t) => {
  const root = await mkdtemp(join(tmpdir(), 'trellis-warm-up-'));
  t.after(() => removeTempDir(root));
  let served = 0;
  const backend = http.createServer((req, res) => {
    served++;
    req.resume();
    res.end('web');
  });
  backend.listen(0, '127.0.0.1');
  await once(backend, 'listening');
  t.after(() => {
    backend.close();
    backend.closeAllConnections();
  });
  await writeServiceFile(root, 'default', 'web', { ports: [{ port: 8080, targetPort: 'http' }] });
  await writeWorkloadFile(root, 'default', 'web-1', {
    service: 'web',
    address: '127.0.0.1',
    ports: [{ name: 'http', port: (backend.address() as net.AddressInfo).port }],
  });
  const up = await startUp(t, root);
  const grpc = (JSON.parse(up.stdout().split('\n')[0]!) as { grpc: string }).grpc;

  const proxy = await startProxyProcess({
    args: ['--destination-address', grpc, '--destination', '127.0.0.1:0=web.default:8080'],
    // A short wait for the control plane: without the warm start, the first request below would
    // fail after it with control-plane-unreachable.
    configYaml: 'discovery:\n  failFastMs: 500\n',
  });
  t.after(() => proxy.stop());
  await up.stop();
  assert.equal(served, 0, 'the warm-up must not send the app anything');

  const body = await new Promise<{ status: number; text: string; error: string | null }>(
    (resolve, reject) => {
      const req = http.get({ host: '127.0.0.1', port: proxy.port('destination-0'), path: '/' }, (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => (text += d));
        res.on('end', () =>
          resolve({
            status: res.statusCode ?? 0,
            text,
            error: (res.headers['trellis-proxy-error'] as string | undefined) ?? null,
          }),
        );
      });
      req.on('error', reject);
    },
  );
  assert.deepEqual(body, { status: 200, text: 'web', error: null });
  assert.equal(served, 1);
});
