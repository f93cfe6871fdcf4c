// Where `trellis demo` keeps its mesh (src/cli/demo-state.ts): the default state folder when it is
// absent or an earlier demo's, a temporary one when a control plane runs over the default or the
// folder is the user's own (left untouched); and the caption's command, which carries --state
// whenever the CLI would not find the folder by itself.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chooseDemoState, cliCommand, DEMO_MARK, pasteable } from '../../src/cli/demo-state.ts';
import { writeControlFile } from '../../src/api/control-file.ts';
import { removeTempDir } from '../helpers/temp-dir.ts';

test('the demo takes the default state folder only when it is free, and never a folder of the user', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'trellis-demo-state-'));
  t.after(() => removeTempDir(dir));
  const wanted = join(dir, 'state');
  const env = { TRELLIS_STATE: wanted };
  const temporary = (root: string) => root.startsWith(join(tmpdir(), 'trellis-demo-')) && root !== wanted;

  const fresh = await chooseDemoState(env);
  assert.deepEqual(fresh, { root: wanted, foundByDefault: false, why: null });
  assert.ok(existsSync(join(wanted, DEMO_MARK)));

  // An earlier demo's folder (killed before it could clean up) is taken again, emptied.
  await writeFile(join(wanted, 'leftover'), 'x');
  assert.equal((await chooseDemoState(env)).root, wanted);
  assert.deepEqual(await readdir(wanted), [DEMO_MARK]);

  // ... unless a control plane runs over it.
  await writeControlFile(wanted, { grpc: '127.0.0.1:1', http: '127.0.0.1:2', pid: process.pid });
  const busy = await chooseDemoState(env);
  t.after(() => removeTempDir(busy.root));
  assert.ok(temporary(busy.root), busy.root);
  assert.match(busy.why!, /a control plane \(pid \d+\) already runs over /);

  // A folder of the user's own is left alone.
  const own = join(dir, 'own');
  await mkdir(join(own, 'services'), { recursive: true });
  const other = await chooseDemoState({ TRELLIS_STATE: own });
  t.after(() => removeTempDir(other.root));
  assert.ok(temporary(other.root), other.root);
  assert.match(other.why!, /holds a mesh of your own/);
  assert.deepEqual(await readdir(own), ['services']);
});

test('the caption is bin/trellis from the checkout, and names the folder when the CLI would not find it', () => {
  const repo = new URL('../../', import.meta.url).pathname;
  assert.equal(cliCommand(repo), 'bin/trellis');
  assert.equal(cliCommand(join(repo, 'bin')), './trellis');
  assert.equal(cliCommand('/'), join(repo, 'bin/trellis'));
  const command = pasteable({ root: '/tmp/a b', foundByDefault: false, why: null }, ['stat', '-n', 'x']);
  assert.match(command, / stat -n x --state '\/tmp\/a b'$/);
  assert.equal(
    pasteable({ root: '/x/.trellis', foundByDefault: true, why: null }, ['check']),
    `${cliCommand()} check`,
  );
});
