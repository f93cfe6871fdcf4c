// A reader that stops early (`trellis tap -o json | head -1`) must not turn the command into a
// stack trace: the CLI (src/cli/main.ts) ends quietly when its stdout is closed (EPIPE). Against a
// stub control plane on loopback that streams tap events until the client goes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { CLI, NODE, REPO } from '../helpers/proxy-process.ts';

const EXCHANGE = JSON.stringify({
  type: 'exchange',
  ts: '2026-12-07T07:57:30.055Z',
  direction: 'inbound',
  protocol: 'http/1.1',
  method: 'GET',
  scheme: 'http',
  authority: 'web:8080',
  path: '/api/list',
  status: 200,
  grpc_status: null,
  latency_ms: 1.5,
  request_bytes: 0,
  response_bytes: 12,
  source: '127.0.0.1:55934',
  destination: '127.0.0.1:42227',
  source_identity: null,
  destination_identity: null,
  tls: false,
  route: null,
  route_kind: null,
  route_rule: null,
  proxy_error: null,
  namespace: 'default',
  workload: 'web',
  instance: 'web-1',
});

test('trellis tap whose reader went away ends quietly, without a stack trace', async (t) => {
  const server = createServer((req, res) => {
    res.writeHead(200, { 'content-type': 'application/x-ndjson' });
    res.write(
      JSON.stringify({
        type: 'started',
        max_rps: 100,
        namespace: 'default',
        workload: 'web',
        instance: 'web-1',
      }) + '\n',
    );
    let sent = 0;
    const timer = setInterval(() => {
      if (++sent > 200) return clearInterval(timer); // bounded: 10 s at most
      res.write(EXCHANGE + '\n');
    }, 50);
    res.on('close', () => clearInterval(timer));
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.after(() => {
    server.closeAllConnections();
    server.close();
  });
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const proc = spawn(NODE, [CLI, 'tap', 'web', '--control', base, '-o', 'json'], {
    cwd: REPO,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let err = '';
  proc.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const killer = setTimeout(() => proc.kill('SIGKILL'), 20_000);
  // Read the first line, then close the pipe, as `head -1` does.
  const [first] = (await once(proc.stdout, 'data')) as [Buffer];
  assert.match(first.toString(), /"path":"\/api\/list"/);
  proc.stdout.destroy();
  const [code] = (await once(proc, 'exit')) as [number | null];
  clearTimeout(killer);
  assert.equal(err, '');
  assert.equal(code, 0);
});
