// Identity and mTLS on one machine, end to end through the product: `trellis up` (the certificate
// authority, with leaves that live 3 s), two workloads under `trellis run` (no identity flags: the
// mesh is on by default), and bounded traffic from one to the other through their proxies.
// Checks that their proxies hold certificates the trust anchor verifies (with openssl), that the
// traffic between them is mutual TLS with the right identities, that the app learns its caller's
// identity and cannot be lied to about it, and that leaves renewed many times plus one trust-anchor
// rotation under steady load fail no request.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { NODE, REPO } from '../helpers/proxy-process.ts';
import { freePort, runCli, startCli, waitFor } from '../helpers/cli.ts';
import { removeTempDir } from '../helpers/temp-dir.ts';

const HELLO = join(REPO, 'test/fixtures/hello-server.ts');

function pemBlocks(text: string): string[] {
  return text.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----\n?/g) ?? [];
}

async function workloadAdmin(root: string, namespace: string, name: string): Promise<string | null> {
  const { readdir } = await import('node:fs/promises');
  const dir = join(root, 'workloads', namespace);
  for (const file of await readdir(dir).catch(() => [] as string[])) {
    if (!file.startsWith(`${name}-`) || !file.endsWith('.json')) continue;
    const w = JSON.parse(await readFile(join(dir, file), 'utf8')) as { ready?: boolean; admin?: string };
    if (w.ready === true && w.admin !== undefined) return w.admin;
  }
  return null;
}

test('trellis run workloads talk mTLS with their own identities; rotation under load fails nothing', async (t) => {
  const root = await mkdtemp(join(tmpdir(), 'trellis-mesh-run-'));
  t.after(() => removeTempDir(root));
  // prettier-ignore
  const up = startCli(t, [
    'up', '--state', root, '--grpc-listen', '127.0.0.1:0', '--http-listen', '127.0.0.1:0',
    '--leaf-lifetime', '3s', '--log-level', 'warn',
  ]);
  await waitFor('trellis up', async () => (up.stdout().includes('"ready"') ? true : null));
  const anchorFile = join(root, 'trust-anchor.pem');
  const firstAnchors = pemBlocks(await readFile(anchorFile, 'utf8'));
  assert.equal(firstAnchors.length, 1, 'one trust anchor at first');

  const [serverPort, clientPort, upstreamPort] = [await freePort(), await freePort(), await freePort()];
  startCli(t, [
    'run',
    '--state',
    root,
    '--name',
    'server',
    '--port',
    String(serverPort),
    '--',
    NODE,
    HELLO,
    String(serverPort),
  ]);
  // prettier-ignore
  startCli(t, [
    'run', '--state', root, '--name', 'client', '--port', String(clientPort),
    '--upstream', `server.default:80=${upstreamPort}`, '--', NODE, HELLO, String(clientPort),
  ]);
  const serverAdmin = await waitFor('server ready', () => workloadAdmin(root, 'default', 'server'));
  await waitFor('client ready', () => workloadAdmin(root, 'default', 'client'));

  // Through the client's proxy to the server's: the app sees who called, and a forged claim is dropped.
  const whoami = await waitFor('a request across the mesh', async () => {
    try {
      const res = await fetch(`http://127.0.0.1:${upstreamPort}/whoami`, {
        headers: { 'trellis-client-id': 'spiffe://cluster.local/ns/default/sa/admin' },
      });
      const text = await res.text();
      return res.status === 200 && text.startsWith('spiffe://') ? text.trim() : null;
    } catch {
      return null;
    }
  });
  assert.equal(whoami, 'spiffe://cluster.local/ns/default/sa/client');

  // The server's chain, as `trellis identity` prints it, verifies against the trust anchor.
  const identity = await runCli(['identity', 'server', '--state', root]);
  assert.equal(identity.code, 0, identity.stderr);
  const chain = pemBlocks(identity.stdout);
  assert.ok(chain.length >= 2, 'leaf and issuer');
  const leaf = new X509Certificate(chain[0]!);
  assert.equal(leaf.subjectAltName, 'URI:spiffe://cluster.local/ns/default/sa/server');
  const lifetimeMs = Date.parse(leaf.validTo) - Date.parse(leaf.validFrom);
  assert.ok(lifetimeMs <= 3000 + 61_000, `a short leaf (${lifetimeMs} ms incl. backdating)`);
  const dir = await mkdtemp(join(tmpdir(), 'trellis-chain-'));
  t.after(() => removeTempDir(dir));
  await writeFile(join(dir, 'leaf.pem'), chain[0]!);
  await writeFile(join(dir, 'issuer.pem'), chain.slice(1).join(''));
  const verified = execFileSync('openssl', [
    'verify',
    '-CAfile',
    anchorFile,
    '-untrusted',
    join(dir, 'issuer.pem'),
    join(dir, 'leaf.pem'),
  ]).toString();
  assert.match(verified, /leaf\.pem: OK/);

  // trellis check: the control plane, the anchor and both workloads' chains are fine.
  const check = await runCli(['check', '--state', root, '-o', 'json']);
  assert.equal(check.code, 0, check.stdout + check.stderr);
  const results = JSON.parse(check.stdout) as { level: string; check: string; detail: string }[];
  assert.deepEqual(
    results.filter((r) => r.level === 'error'),
    [],
  );
  for (const name of ['server', 'client']) {
    const chainCheck = results.find(
      (r) => r.check.startsWith(`workload default/${name}-`) && r.check.endsWith(' identity'),
    );
    assert.match(chainCheck?.detail ?? '', new RegExp(`sa/${name}, chain verifies to a trust anchor`));
  }

  // Steady load (bounded: at most 600 requests, 20 s) while leaves renew and the anchor rotates.
  const serials = new Set<string>([leaf.serialNumber]);
  let ok = 0;
  const failures: string[] = [];
  let rotated = false;
  const deadline = Date.now() + 20_000;
  for (let i = 0; i < 600 && Date.now() < deadline; i++) {
    try {
      const res = await fetch(`http://127.0.0.1:${upstreamPort}/n${i}`);
      const text = await res.text();
      if (res.status === 200 && text === `hello /n${i}\n`) ok++;
      else
        failures.push(`${res.status} ${res.headers.get('trellis-proxy-error') ?? ''} ${text.slice(0, 80)}`);
    } catch (error) {
      failures.push((error as Error).message);
    }
    if (i === 40 && !rotated) {
      const rotate = await runCli(['identity', 'rotate', '--state', root]);
      assert.equal(rotate.code, 0, rotate.stderr);
      rotated = true;
    }
    if (i % 20 === 0) {
      const current = await fetch(`http://${serverAdmin}/identity`).then((r) => r.text());
      const block = pemBlocks(current)[0];
      if (block !== undefined) serials.add(new X509Certificate(block).serialNumber);
    }
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  assert.deepEqual(failures, [], 'no request failed during renewals and rotation');
  assert.ok(ok >= 300, `steady traffic (${ok} requests)`);
  assert.ok(serials.size >= 4, `the server's leaf was renewed several times (${serials.size} serials)`);

  // The rotation finished: one anchor again, a new one, and the server's chain leads to it.
  const finalAnchors = await waitFor('the rotation to finish', async () => {
    const blocks = pemBlocks(await readFile(anchorFile, 'utf8'));
    return blocks.length === 1 && blocks[0] !== firstAnchors[0] ? blocks : null;
  });
  const after = pemBlocks(await fetch(`http://${serverAdmin}/identity`).then((r) => r.text()));
  const issuer = new X509Certificate(after[after.length - 1]!);
  assert.ok(
    issuer.checkIssued(new X509Certificate(finalAnchors[0]!)),
    'the issuer is signed by the new anchor',
  );

  // The mesh metrics of the server's proxy name the client's identity.
  const metrics = await fetch(`http://${serverAdmin}/metrics`).then((r) => r.text());
  assert.match(
    metrics,
    /trellis_mesh_connections_total\{[^}]*direction="inbound"[^}]*peer_identity="spiffe:\/\/cluster\.local\/ns\/default\/sa\/client"[^}]*\} [1-9]/,
  );
});
