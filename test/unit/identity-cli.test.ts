// The identity command line: `trellis identity NAME` reads a workload's chain from its proxy's admin
// listener (a stand-in server here), `status` and `rotate` talk to a running control plane found
// through the state folder's control.json (rotate with the operator token: the state folder's, or
// --operator-token-file; without it the control plane refuses); and the duration flags' parser.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { parseDuration } from '../../src/cli/control.ts';
import { ConfigError } from '../../src/core/errors.ts';
import { writeWorkloadFile } from '../../src/control/discovery/local-state.ts';
import { startIdentityControlPlane } from '../helpers/identity-control-plane.ts';
import { loadOrCreateOperatorToken } from '../../src/control/operator-token.ts';
import { writeControlFile } from '../../src/api/control-file.ts';
import { removeTempDir } from '../helpers/temp-dir.ts';

const SCRIPT = `import { run } from ${JSON.stringify(new URL('../../src/cli/identity.ts', import.meta.url).href)};
try {
  process.exitCode = await run(process.argv.slice(1));
} catch (e) {
  process.stderr.write('trellis: ' + e.message + '\\n');
  process.exitCode = e.code === 'TRELLIS_ERR_CONFIG' ? 2 : 1;
}`;

/** Runs `trellis identity ARGS` in a child process (what main.ts would run, errors as main.ts reports them). */
function identity(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      ['--input-type=module', '-e', SCRIPT, '--', ...args],
      { timeout: 20_000 },
      (error, stdout, stderr) =>
        resolve({ code: error ? ((error as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });
}

test('trellis identity NAME prints the chain from the workload proxy, or says why not', async (t) => {
  const root = await mkdtemp(join(tmpdir(), 'trellis-identity-cli-'));
  t.after(() => removeTempDir(root));
  const chain = '-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n';
  const admin = createServer((req, res) => {
    const known = req.url === '/identity' && req.headers.host?.startsWith('127.0.0.1');
    res.writeHead(known ? 200 : 404, { 'content-type': 'application/x-pem-file' });
    res.end(known ? chain : 'no identity\n');
  });
  await new Promise<void>((resolve) => admin.listen(0, '127.0.0.1', resolve));
  t.after(() => new Promise<void>((resolve) => admin.close(() => resolve())));
  const port = (admin.address() as AddressInfo).port;
  await writeWorkloadFile(root, 'default', 'web-1', {
    service: 'web',
    address: '127.0.0.1',
    port: 1,
    admin: `0.0.0.0:${port}`,
  });
  await writeWorkloadFile(root, 'default', 'db-1', {
    service: 'db',
    address: '127.0.0.1',
    port: 2,
    admin: `localhost:${port}`,
  });

  const web = await identity('web', '--state', root);
  assert.equal(web.code, 0, web.stderr);
  assert.equal(web.stdout, chain);
  assert.equal((await identity('workload/web', '--state', root)).stdout, chain);
  assert.equal((await identity('deploy/web', '--state', root)).stdout, chain);
  assert.equal((await identity('po/web-1', '--state', root)).stdout, chain);
  const described = await identity('-o', 'json', 'web', '--state', root);
  assert.equal(described.code, 0, described.stderr);
  assert.deepEqual(JSON.parse(described.stdout), {
    namespace: 'default',
    workload: 'web',
    instance: 'web-1',
    chain: [],
    pem: chain,
  });
  const badOutput = await identity('web', '-o', 'wide', '--state', root);
  assert.equal(badOutput.code, 2);
  assert.match(badOutput.stderr, /--output: expected pem, json, got 'wide'/);

  const db = await identity('db', '--state', root);
  assert.equal(db.code, 1);
  assert.match(db.stderr, /no certificate for workload db.default:\n {2}db-1: its proxy has no identity yet/);

  const nobody = await identity('nope', '-n', 'shop', '--state', root);
  assert.equal(nobody.code, 1);
  assert.match(nobody.stderr, /no workload nope in namespace shop/);
  const noPod = await identity('po/web-9', '--state', root);
  assert.equal(noPod.code, 1);
  assert.match(noPod.stderr, /no instance web-9 in namespace default/);
});

test('trellis identity status and rotate talk to the running control plane', async (t) => {
  const { root, ca, plane } = await startIdentityControlPlane(t, {
    trustDomain: 'example.org',
    plane: async (root) => ({ operatorToken: await loadOrCreateOperatorToken(root, () => {}) }),
  });
  await writeControlFile(root, {
    grpc: plane.grpc,
    http: plane.http,
    pid: process.pid,
    trustDomain: 'example.org',
  });

  const status = await identity('status', '--state', root, '-o', 'json');
  assert.equal(status.code, 0, status.stderr);
  const parsed = JSON.parse(status.stdout) as { trustDomain: string; rotation: { phase: string } };
  assert.equal(parsed.trustDomain, 'example.org');
  assert.equal(parsed.rotation.phase, 'idle');
  const table = await identity('status', '--state', root);
  assert.equal(table.code, 0, table.stderr);
  assert.match(
    table.stdout,
    /^trust domain {3}example\.org\ntrust anchors {2}1\n {2}[0-9a-f]{12} {2}.* expires \d{4}-.*\(signs the issuer\)\n/,
  );
  assert.match(
    table.stdout,
    /\nrotation {7}idle\nissued {9}0 certificates since the control plane started\n$/,
  );

  // Rotating changes state: the operator token goes with it, from the state folder or a file.
  const control = `http://${plane.http}`;
  const anonymous = await identity('rotate', '--control', control);
  assert.equal(anonymous.code, 1);
  assert.match(
    anonymous.stderr,
    /^trellis identity rotate: HTTP 401: .*\(no bearer token\); send the header "Authorization: Bearer TOKEN".*\n\(with --control, give --operator-token-file FILE\)\n$/,
  );
  assert.equal(ca.rotationPhase, 'idle');
  const rotate = await identity('rotate', '--state', root);
  assert.equal(rotate.code, 0, rotate.stderr);
  assert.match(rotate.stdout, /anchor rotation started: phase anchor-added, next step at \d{4}-/);
  assert.equal(ca.rotationPhase, 'anchor-added');
  const again = await identity(
    'rotate',
    '--control',
    control,
    '--operator-token-file',
    join(root, 'operator-token'),
  );
  assert.equal(again.code, 1);
  assert.match(again.stderr, /already running/);
  const missing = await identity('rotate', '--control', control, '--operator-token-file', join(root, 'nope'));
  assert.equal(missing.code, 1);
  assert.match(missing.stderr, /cannot read the operator token .*nope: ENOENT/);
});

test('durations: units, combinations, and refusals that name the flag', () => {
  assert.equal(parseDuration('--leaf-lifetime', '24h'), 86_400_000);
  assert.equal(parseDuration('--leaf-lifetime', '90s'), 90_000);
  assert.equal(parseDuration('--leaf-lifetime', '500ms'), 500);
  assert.equal(parseDuration('--leaf-lifetime', '1h30m'), 5_400_000);
  assert.equal(parseDuration('--leaf-lifetime', '30d'), 2_592_000_000);
  for (const bad of ['', '24', 'h', '1.5h', '-1s', '1 h', '1H', '1hh', '1y']) {
    assert.throws(() => parseDuration('--leaf-lifetime', bad), /--leaf-lifetime: expected a duration/, bad);
  }
  for (const zero of ['0s', '0ms', '0h0m'])
    assert.throws(
      () => parseDuration('--leaf-lifetime', zero),
      /--leaf-lifetime: must be longer than 0/,
      zero,
    );
  const unit = fc.constantFrom(['ms', 1], ['s', 1000], ['m', 60_000], ['h', 3_600_000], ['d', 86_400_000]);
  fc.assert(
    fc.property(
      fc.array(fc.tuple(fc.integer({ min: 1, max: 100_000 }), unit), { minLength: 1, maxLength: 4 }),
      (parts) => {
        const text = parts.map(([n, [u]]) => `${n}${u}`).join('');
        assert.equal(
          parseDuration('--x', text),
          parts.reduce((sum, [n, [, ms]]) => sum + n * (ms as number), 0),
        );
      },
    ),
  );
  fc.assert(
    fc.property(fc.string({ maxLength: 20 }), (text) => {
      try {
        assert.ok(parseDuration('--x', text) > 0);
      } catch (error) {
        assert.ok(error instanceof ConfigError);
      }
    }),
  );
});
