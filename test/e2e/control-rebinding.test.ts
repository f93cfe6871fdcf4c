// DNS rebinding against `trellis up`: its HTTP API listens on loopback, where reads are open to the
// host, live requests included (GET /api/tap, /api/traces). A web page the operator opens can point
// its own name at 127.0.0.1 and read that API as its own origin; what gives it away is the Host it
// sends, its own name. The API answers only Host values that name this host (localhost, an IP
// address) and refuses the others with 403, counted and logged (src/control/host-guard.ts).
import assert from 'node:assert/strict';
import { mkdtemp } from 'node:fs/promises';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { startUp } from '../helpers/cli.ts';
import { removeTempDir } from '../helpers/temp-dir.ts';

/** GET `path` from the API at `port` with the Host field `host`. */
function get(port: number, path: string, host: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, headers: { host }, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.setTimeout(5000, () => req.destroy(new Error(`GET ${path} timed out`)));
    req.end();
  });
}

test('trellis up on loopback answers only Host values that name this host', async (t) => {
  const root = await mkdtemp(join(tmpdir(), 'trellis-rebinding-'));
  t.after(() => removeTempDir(root));
  const up = await startUp(t, root);
  const ready = JSON.parse(
    up
      .stdout()
      .split('\n')
      .find((l) => l.includes('"ready"'))!,
  ) as { http: string };
  const port = Number(ready.http.slice(ready.http.lastIndexOf(':') + 1));

  for (const host of [
    `127.0.0.1:${port}`,
    `localhost:${port}`,
    `LOCALHOST.:${port}`,
    `[::1]:${port}`,
    '127.0.0.1',
  ]) {
    const { status } = await get(port, '/api/services', host);
    assert.equal(status, 200, `Host ${host}`);
  }

  // A rebound page's own name: no read, however harmless it looks.
  for (const path of ['/api/traces', '/api/services', '/api/identity', '/dashboard', '/metrics']) {
    const refused = await get(port, path, `attacker.example:${port}`);
    assert.equal(refused.status, 403, `${path}: ${refused.body}`);
    assert.match(refused.body, /does not name this host/);
  }
  assert.equal((await get(port, '/api/tap?workload=web', 'rebind.attacker.example')).status, 403);
  assert.equal((await get(port, '/api/services', 'localhost.attacker.example')).status, 403);

  const metrics = await get(port, '/metrics', `127.0.0.1:${port}`);
  assert.match(metrics.body, /^trellis_control_http_foreign_host_total 7$/m);
  assert.match(up.stderr(), /its Host does not name this host/);
});
