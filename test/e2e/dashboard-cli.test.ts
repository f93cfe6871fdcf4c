// `trellis dashboard` as a command: over a running `trellis up` it prints the URL of the page its
// loopback relay serves (src/cli/dashboard-relay.ts) on stdout and holds; the page and its files
// come through it with an own-origin Content-Security-Policy, and so do the page's API reads;
// --direct prints the control plane's own URL instead; SIGTERM ends it with 0; it ends with 1 once
// the control plane is gone; without a control plane it says so.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { once } from 'node:events';
import { runCli, startCli, waitFor } from '../helpers/cli.ts';
import { startUp } from '../helpers/trellis-run.ts';
import { removeTempDir } from '../helpers/temp-dir.ts';

test('trellis dashboard prints the URL, holds until SIGTERM, and stops when the control plane goes', async (t) => {
  const root = await mkdtemp(join(tmpdir(), 'trellis-dashboard-'));
  t.after(() => removeTempDir(root));
  const up = await startUp(t, root);

  const first = startCli(t, ['dashboard', '--state', root]);
  const url = await waitFor('the URL', async () => first.stdout().match(/^(http:\/\/\S+)\n/)?.[1] ?? null);
  assert.match(url, /^http:\/\/127\.0\.0\.1:\d+\/dashboard\?key=[\w-]+$/, 'served by the relay');
  const origin = new URL(url).origin;
  const entry = await fetch(url, { redirect: 'manual' });
  assert.equal(entry.status, 302);
  const cookie = entry.headers.get('set-cookie')!.split(';')[0]!;
  const page = await fetch(`${origin}/dashboard`, { headers: { cookie } });
  assert.equal(page.status, 200);
  assert.match(page.headers.get('content-type')!, /^text\/html/);
  assert.match(page.headers.get('content-security-policy')!, /default-src 'none'; script-src 'self'/);
  assert.match(await page.text(), /<script src="\/dashboard\/app\.js" defer><\/script>/);
  for (const [path, type] of [
    ['/dashboard/app.js', 'text/javascript'],
    ['/dashboard/style.css', 'text/css'],
    ['/api/workloads', 'application/json'],
  ] as const) {
    const res = await fetch(`${origin}${path}`, { headers: { cookie } });
    assert.equal(res.status, 200, path);
    assert.match(res.headers.get('content-type')!, new RegExp(`^${type}`));
    assert.ok((await res.text()).length > 1, path);
  }
  const post = await fetch(`${origin}/api/workloads`, { method: 'POST', body: '{}', headers: { cookie } });
  assert.equal(post.status, 405);
  await post.text();
  const keyless = await fetch(`${origin}/api/workloads`);
  assert.equal(keyless.status, 401, 'only the browser that opened the printed URL');
  await keyless.text();
  assert.equal(await first.stop(), 0, first.stderr());

  const direct = startCli(t, ['dashboard', '--state', root, '--direct']);
  const directUrl = await waitFor(
    'the direct URL',
    async () => direct.stdout().match(/^(http:\/\/\S+)\n/)?.[1] ?? null,
  );
  assert.equal(directUrl, `http://${up.http}/dashboard`);
  assert.equal(await direct.stop(), 0, direct.stderr());

  const second = startCli(t, ['dashboard', '--state', root]);
  await waitFor('the URL again', async () => (second.stdout().includes('/dashboard') ? true : null));
  assert.equal(await up.stop(), 0);
  const code = second.proc.exitCode ?? ((await once(second.proc, 'exit')) as [number | null])[0];
  assert.equal(code, 1, second.stderr());
  assert.match(second.stderr(), /does not serve the dashboard|cannot reach the control plane/);
});

test('trellis dashboard without a control plane says so', async (t) => {
  const root = await mkdtemp(join(tmpdir(), 'trellis-dashboard-none-'));
  t.after(() => removeTempDir(root));
  const out = await runCli(['dashboard', '--state', root]);
  assert.equal(out.code, 1);
  assert.equal(out.stdout, '');
  assert.match(out.stderr, /no control plane runs over the state folder/);
});
