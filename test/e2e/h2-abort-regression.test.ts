// Regressions for crashes the fuzz campaign found in node:http2 (docs/security.md, "Fuzzing"):
// each reproducer, replayed against a fresh mesh of two real proxies (in a network namespace of
// their own, on the campaign's ports), must no longer take a proxy down. The node:http2 abort
// (before h2-header-guard.ts it aborted the client-side proxy on every replay), and node's
// JavaScript stream asserting on a write while the guard's shutdown was pending (the server-side
// proxy exited on about one replay in three before the guard ended its side at once).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { NODE, REPO } from '../helpers/proxy-process.ts';

const KNOWN = [
  { file: 'fuzz/known/node-http2-abort-outbound.json', repeat: 5 },
  { file: 'fuzz/known/h2-guard-write-after-shutdown.json', repeat: 6 },
];

for (const { file, repeat } of KNOWN)
  test(`the reproducer ${file} no longer takes a proxy down`, { timeout: 120_000 }, (t) => {
    // The reproducer needs the campaign's fixed ports, which only a network namespace of its own
    // (as root) keeps clear of the other tests' sockets.
    if (process.getuid?.() !== 0) {
      t.skip('needs root for a network namespace of its own');
      return;
    }
    const results = mkdtempSync(join(tmpdir(), 'trellis-h2-abort-'));
    t.after(() => rmSync(results, { recursive: true, force: true }));
    const r = spawnSync(
      NODE,
      ['fuzz/run.ts', '--replay', file, '--repeat', String(repeat), '--results', results],
      { cwd: REPO, encoding: 'utf8', timeout: 100_000 },
    );
    const output = `${r.stdout}${r.stderr}`;
    assert.match(output, /it does not reproduce/, output.slice(-2000));
    assert.equal(r.status, 0, output.slice(-2000));
  });
