// bin/trellis runs dist/ when it is there: a source edited after the last `npm run build` would run
// stale code without a word, so it warns on stderr (and still runs dist/). A copy of bin/trellis in
// a temporary tree with a stub dist/cli/main.js, so the real build is not touched.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { copyFile, mkdir, mkdtemp, symlink, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { NODE, REPO } from '../helpers/proxy-process.ts';
import { removeTempDir } from '../helpers/temp-dir.ts';

const run = promisify(execFile);

test('bin/trellis warns when a source file is newer than dist/, and not when the build is fresh', async (t) => {
  const root = await mkdtemp(join(tmpdir(), 'trellis-bin-'));
  t.after(() => removeTempDir(root));
  for (const dir of ['bin', 'dist/cli', 'src/cli', 'node_modules/node/bin'])
    await mkdir(join(root, dir), { recursive: true });
  await copyFile(join(REPO, 'bin/trellis'), join(root, 'bin/trellis'));
  await symlink(NODE, join(root, 'node_modules/node/bin/node'));
  const main = join(root, 'dist/cli/main.js');
  const source = join(root, 'src/cli/stat.ts');
  await writeFile(main, "process.stdout.write('dist ' + process.argv.slice(2).join(' ') + '\\n');\n");
  await writeFile(source, '// edited\n');
  const past = new Date(Date.now() - 60_000);
  await utimes(main, past, past);
  const stale = await run('sh', [join(root, 'bin/trellis'), 'stat']);
  assert.equal(stale.stdout, 'dist stat\n');
  assert.match(
    stale.stderr,
    /^trellis: warning: src\/cli\/stat\.ts is newer than dist\/ \(run `npm run build`\); running the old build\n$/,
  );
  // A proxy starts often: no look at the sources.
  assert.equal((await run('sh', [join(root, 'bin/trellis'), 'proxy'])).stderr, '');
  await utimes(source, new Date(Date.now() - 120_000), new Date(Date.now() - 120_000));
  const fresh = await run('sh', [join(root, 'bin/trellis'), 'stat']);
  assert.equal(fresh.stdout, 'dist stat\n');
  assert.equal(fresh.stderr, '');
});
