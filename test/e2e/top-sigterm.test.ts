// `trellis top` with stdout not a terminal prints its table once, when it stops: on --duration,
// --max-events, Ctrl-C (SIGINT), and also SIGTERM, which is what `timeout 10 trellis top web >
// top.txt` and process supervisors send; it used to kill top before it printed anything. Against
// a stand-in control plane whose /api/tap stream stays open.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createServer, type ServerResponse } from 'node:http';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { CLI, NODE, REPO } from '../helpers/proxy-process.ts';

test('trellis top prints its table when SIGTERM stops it', { timeout: 60_000 }, async (t) => {
  const streams: ServerResponse[] = [];
  const server = createServer((req, res) => {
    if (!req.url?.startsWith('/api/tap')) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { 'content-type': 'application/x-ndjson' });
    res.write(
      JSON.stringify({
        type: 'exchange',
        direction: 'inbound',
        namespace: 'default',
        workload: 'web',
        method: 'GET',
        path: '/hello',
        status: 200,
        latency_ms: 1.5,
        source: 'client',
        destination: 'web',
        tls: true,
      }) + '\n',
    );
    streams.push(res);
    server.emit('tapping');
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.after(() => {
    for (const res of streams) res.destroy();
    server.close();
  });
  const { port } = server.address() as AddressInfo;
  const top = spawn(NODE, [CLI, 'top', 'web', '--control', `http://127.0.0.1:${port}`], {
    cwd: REPO,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  top.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  top.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = once(top, 'exit') as Promise<[number | null, NodeJS.Signals | null]>;
  const killer = setTimeout(() => top.kill('SIGKILL'), 30_000);
  t.after(() => clearTimeout(killer));
  await once(server, 'tapping');
  top.kill('SIGTERM');
  const [code, signal] = await exited;
  assert.equal(signal, null, `killed by ${signal}; stderr: ${stderr}`);
  assert.equal(code, 0, stderr);
  assert.match(stdout, /^SOURCE +DESTINATION +METHOD +PATH +COUNT/);
});
