// `trellis up` over a state folder an older version left readable by others narrows it at start
// (folders 0700, files 0600) and says so in one log line; what it writes itself is 0600.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmod, lstat, mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeWorkloadFile } from '../../src/control/discovery/local-state.ts';
import { startCli, waitFor } from '../helpers/cli.ts';
import { removeTempDir } from '../helpers/temp-dir.ts';

const modeOf = async (path: string) => ((await lstat(path)).mode & 0o777).toString(8);

test('trellis up narrows a state folder others could read, with a log line', async (t) => {
  const parent = await mkdtemp(join(tmpdir(), 'trellis-up-modes-'));
  t.after(() => removeTempDir(parent));
  const root = join(parent, 'state');
  await writeWorkloadFile(root, 'shop', 'web-1', {
    service: 'web',
    address: '127.0.0.1',
    ports: [{ name: 'http', port: 8080 }],
  });
  const registration = join(root, 'workloads', 'shop', 'web-1.json');
  // As an older version wrote them under umask 022.
  for (const dir of [root, join(root, 'workloads'), join(root, 'workloads', 'shop')]) await chmod(dir, 0o755);
  await chmod(registration, 0o644);

  const up = startCli(t, [
    'up',
    '--state',
    root,
    '--grpc-listen',
    '127.0.0.1:0',
    '--http-listen',
    '127.0.0.1:0',
    '--log-level',
    'warn',
  ]);
  await waitFor('trellis up', async () => (up.stdout().includes('"ready"') ? true : null));
  const line = up
    .stderr()
    .split('\n')
    .find((l) => l.includes('the state folder could be read by others'));
  assert.ok(line !== undefined, `the log line, in: ${up.stderr()}`);
  const logged = JSON.parse(line) as { level: string; narrowed: number; paths: string[] };
  assert.equal(logged.level, 'warn');
  assert.equal(logged.narrowed, 4);
  assert.deepEqual(
    logged.paths.sort(),
    [root, join(root, 'workloads'), join(root, 'workloads', 'shop'), registration].sort(),
  );
  assert.equal(await modeOf(root), '700');
  assert.equal(await modeOf(join(root, 'workloads', 'shop')), '700');
  assert.equal(await modeOf(registration), '600');
  for (const made of [
    'control.json',
    'operator-token',
    'trace-token',
    'trust-anchor.pem',
    'identity/issuer.pem',
  ])
    assert.equal(await modeOf(join(root, made)), '600', made);
  for (const made of ['identity', 'policy', 'routes', 'services'])
    assert.equal(await modeOf(join(root, made)), '700', made);
  assert.equal(await up.stop(), 0, up.stderr());
});
