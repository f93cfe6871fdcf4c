// The state folder of one-machine mode is its owner's alone (src/control/discovery/state-permissions.ts):
// every writer of it makes folders 0700 and files 0600 under the usual umask 022, and
// tightenStateFolder narrows a folder left looser (by an older version, or by hand) without
// following a symbolic link or touching what is not the state folder's own.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmod, lstat, mkdir, mkdtemp, readdir, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeControlFile } from '../../src/api/control-file.ts';
import { writeAtomically } from '../../src/control/discovery/state-file-io.ts';
import { writeServiceFile, writeWorkloadFile } from '../../src/control/discovery/local-state.ts';
import { tightenStateFolder } from '../../src/control/discovery/state-permissions.ts';
import { writePolicyFile } from '../../src/control/policy/state-files.ts';
import { writeRouteFile } from '../../src/control/routes/state-files.ts';
import { readResources, type Resource } from '../../src/control/resources.ts';
import { removeTempDir } from '../helpers/temp-dir.ts';

const modeOf = async (path: string) => (await lstat(path)).mode & 0o777;

/** Every path under `dir` (itself included) with its mode. */
async function modes(dir: string): Promise<Map<string, number>> {
  const out = new Map<string, number>([[dir, await modeOf(dir)]]);
  for (const name of await readdir(dir, { recursive: true })) {
    out.set(join(dir, name), await modeOf(join(dir, name)));
  }
  return out;
}

const POLICY_AND_ROUTE = `apiVersion: policy.trellis.dev/v1alpha1
kind: Server
metadata: { name: web-http, namespace: shop }
spec: { workload: web, port: 80 }
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: web, namespace: shop }
spec:
  parentRefs: [{ kind: Service, group: '', name: web, port: 80 }]
  rules: [{ backendRefs: [{ name: web, port: 80 }] }]
`;

test('every writer of the state folder makes folders 0700 and files 0600 (umask 022)', async (t) => {
  const previous = process.umask(0o022);
  t.after(() => process.umask(previous));
  const parent = await mkdtemp(join(tmpdir(), 'trellis-state-modes-'));
  t.after(() => removeTempDir(parent));
  const root = join(parent, 'state'); // made by the first write
  await writeServiceFile(root, 'shop', 'web', { ports: [{ port: 80, targetPort: 8080 }] });
  await writeWorkloadFile(root, 'shop', 'web-1', {
    service: 'web',
    address: '127.0.0.1',
    ports: [{ name: 'http', port: 8080 }],
  });
  const { resources, problems } = readResources(POLICY_AND_ROUTE, 'policy.yaml');
  assert.deepEqual(problems, []);
  for (const r of resources as Resource[]) {
    if (r.kind === 'Server') await writePolicyFile(root, r);
    else if (r.kind === 'HTTPRoute') await writeRouteFile(root, r);
  }
  await writeControlFile(root, { grpc: '127.0.0.1:1', http: '127.0.0.1:2', pid: 1, trustDomain: 'x' });
  await writeAtomically(join(root, 'identity', 'trust-anchors.pem'), 'certificates\n');
  await writeAtomically(join(root, 'trust-anchor.pem'), 'certificates\n');

  const found = await modes(root);
  assert.ok(found.size >= 15, `the writers made ${found.size} entries`);
  for (const [path, mode] of found) {
    const dir = (await lstat(path)).isDirectory();
    assert.equal(mode.toString(8), dir ? '700' : '600', path);
  }
});

test('tightenStateFolder narrows the state folder and its entries, nothing else', async (t) => {
  const parent = await mkdtemp(join(tmpdir(), 'trellis-state-tighten-'));
  t.after(() => removeTempDir(parent));
  const root = join(parent, 'state');
  const outside = join(parent, 'elsewhere');
  const make = async (path: string, mode: number, dir = false) => {
    if (dir) await mkdir(path, { recursive: true });
    else await writeFile(path, 'x\n');
    await chmod(path, mode);
  };
  await make(root, 0o755, true);
  await make(join(root, 'workloads'), 0o755, true);
  await make(join(root, 'workloads', 'shop'), 0o775, true);
  await make(join(root, 'workloads', 'shop', 'web-1.json'), 0o644);
  await make(join(root, 'identity'), 0o700, true);
  await make(join(root, 'identity', 'anchor.pem'), 0o644);
  await make(join(root, 'identity', 'anchor.key.pem'), 0o600);
  await make(join(root, 'control.json'), 0o666);
  await make(join(root, 'notes.txt'), 0o644); // not the state folder's: left alone
  await make(join(root, 'mine'), 0o755, true);
  await make(outside, 0o755, true);
  await make(join(outside, 'shared.yaml'), 0o644);
  await symlink(outside, join(root, 'services')); // a link is never followed

  const first = await tightenStateFolder(root);
  assert.deepEqual(first.failed, []);
  assert.deepEqual(first.narrowed, [
    root,
    join(root, 'workloads'),
    join(root, 'workloads', 'shop'),
    join(root, 'workloads', 'shop', 'web-1.json'),
    join(root, 'identity', 'anchor.pem'),
    join(root, 'control.json'),
  ]);
  assert.equal(await modeOf(root), 0o700);
  assert.equal(await modeOf(join(root, 'workloads', 'shop')), 0o700);
  assert.equal(await modeOf(join(root, 'workloads', 'shop', 'web-1.json')), 0o600);
  assert.equal(await modeOf(join(root, 'identity', 'anchor.pem')), 0o600);
  assert.equal(await modeOf(join(root, 'control.json')), 0o600);
  assert.equal(await modeOf(join(root, 'notes.txt')), 0o644);
  assert.equal(await modeOf(join(root, 'mine')), 0o755);
  assert.equal(await modeOf(outside), 0o755);
  assert.equal(await modeOf(join(outside, 'shared.yaml')), 0o644);

  assert.deepEqual(await tightenStateFolder(root), { narrowed: [], failed: [] }, 'nothing left to narrow');
  assert.deepEqual(await tightenStateFolder(join(parent, 'missing')), { narrowed: [], failed: [] });
});
