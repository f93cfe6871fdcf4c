// One-machine workload tokens (src/control/identity/tokens.ts): minted for a registered workload
// they grant its identity; forged, tampered, expired, revoked (the workload stopped, or its lease
// ran out: a replayed token) and wrong-identity tokens are refused with the right status. Random strings and random
// edits of a real token never pass and never throw anything but an IdentityError.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { workloadPath, writeWorkloadFile } from '../../src/control/discovery/local-state.ts';
import { IdentityError, type IdentityStatus } from '../../src/control/identity/errors.ts';
import { LocalTokenVerifier, mintWorkloadToken, tokenKeyPath } from '../../src/control/identity/tokens.ts';
import { removeTempDir } from '../helpers/temp-dir.ts';

const ID = 'spiffe://cluster.local/ns/default/sa/web';

async function setUp(t: { after(fn: () => Promise<void>): void }) {
  const root = await mkdtemp(join(tmpdir(), 'trellis-tokens-'));
  t.after(() => removeTempDir(root));
  await writeWorkloadFile(root, 'default', 'web-123', { service: 'web', address: '127.0.0.1', port: 8080 });
  let now = Date.now();
  const verifier = new LocalTokenVerifier({ root, trustDomain: 'cluster.local', now: () => now });
  const claims = { namespace: 'default', serviceAccount: 'web', instance: 'web-123', ttlMs: 60_000 };
  return { root, verifier, claims, advance: (ms: number) => (now += ms) };
}

async function refused(verifier: LocalTokenVerifier, token: string, identity = ID): Promise<IdentityError> {
  try {
    await verifier.authorize(token, identity);
  } catch (error) {
    assert.ok(error instanceof IdentityError, `expected an IdentityError, got ${String(error)}`);
    return error;
  }
  assert.fail(`token accepted: ${JSON.stringify(token.slice(0, 80))}`);
}

function assertRefused(error: IdentityError, status: IdentityStatus, message: RegExp): void {
  assert.equal(error.status, status);
  assert.match(error.message, message);
}

test('a minted token grants its workload identity; the key file is created 0600 and shared', async (t) => {
  const { root, verifier, claims } = await setUp(t);
  const token = await mintWorkloadToken(root, claims);
  assert.equal((await stat(tokenKeyPath(root))).mode & 0o777, 0o600);
  await verifier.authorize(token, ID);
  await verifier.authorize(`${token}\n`, ID); // as read from a token file
  // A second mint reuses the key.
  await verifier.authorize(await mintWorkloadToken(root, claims), ID);
  await assert.rejects(mintWorkloadToken(root, { ...claims, namespace: 'Bad_NS' }), /namespace/);
});

test('forged, tampered, expired, revoked and wrong-identity tokens are refused', async (t) => {
  const { root, verifier, claims, advance } = await setUp(t);
  const token = await mintWorkloadToken(root, claims);

  // Forged: minted with another state folder's key.
  const other = await mkdtemp(join(tmpdir(), 'trellis-tokens-other-'));
  t.after(() => removeTempDir(other));
  assertRefused(
    await refused(verifier, await mintWorkloadToken(other, claims)),
    'UNAUTHENTICATED',
    /not a valid/,
  );

  // Tampered: the payload says another service account, the mac is the old one.
  const [prefix, payload, mac] = token.split('.');
  const body = JSON.parse(Buffer.from(payload!, 'base64url').toString()) as Record<string, unknown>;
  const tampered = `${prefix}.${Buffer.from(JSON.stringify({ ...body, serviceAccount: 'admin' })).toString('base64url')}.${mac}`;
  assertRefused(
    await refused(verifier, tampered, 'spiffe://cluster.local/ns/default/sa/admin'),
    'UNAUTHENTICATED',
    /not a valid/,
  );
  assertRefused(await refused(verifier, `${prefix}.${payload}.`), 'UNAUTHENTICATED', /not a valid/);
  assertRefused(await refused(verifier, ''), 'UNAUTHENTICATED', /not a valid/);

  // Wrong identity: a valid token asks for someone else's.
  assertRefused(
    await refused(verifier, token, 'spiffe://cluster.local/ns/default/sa/db'),
    'PERMISSION_DENIED',
    /grants spiffe:\/\/cluster.local\/ns\/default\/sa\/web/,
  );
  assertRefused(
    await refused(verifier, token, 'spiffe://other.org/ns/default/sa/web'),
    'PERMISSION_DENIED',
    /not spiffe:\/\/other.org/,
  );

  // Revoked: the workload stopped (its registration is gone); replaying its token fails.
  await rm(workloadPath(root, 'default', 'web-123'));
  assertRefused(
    await refused(verifier, token),
    'UNAUTHENTICATED',
    /revoked: workload instance default\/web-123 is not registered/,
  );
  await writeWorkloadFile(root, 'default', 'web-123', { service: 'web', address: '127.0.0.1', port: 8080 });
  await verifier.authorize(token, ID);

  // Revoked too: a registration whose lease ran out (its holder died) grants nothing, file or not.
  const lease = { renewedAt: Date.now(), durationMs: 10_000 };
  await writeWorkloadFile(root, 'default', 'web-123', {
    service: 'web',
    address: '127.0.0.1',
    port: 8080,
    lease,
  });
  await verifier.authorize(token, ID);
  advance(11_000);
  assertRefused(await refused(verifier, token), 'UNAUTHENTICATED', /revoked/);
  advance(-11_000);
  await writeWorkloadFile(root, 'default', 'web-123', { service: 'web', address: '127.0.0.1', port: 8080 });

  // Expired.
  advance(60_001);
  assertRefused(await refused(verifier, token), 'UNAUTHENTICATED', /expired at/);
});

test('an instance not registered yet is refused as starting (logged at debug); once registered and gone, as revoked', async (t) => {
  const { root, verifier, claims } = await setUp(t);
  // `trellis run` registers an instance once its proxy is up, and the proxy asks as it starts.
  const early = await mintWorkloadToken(root, { ...claims, instance: 'web-456' });
  const starting = await refused(verifier, early);
  assertRefused(starting, 'UNAUTHENTICATED', /web-456 is not registered \(yet/);
  assert.equal(starting.expected, true, 'a start, not a replay');
  await writeWorkloadFile(root, 'default', 'web-456', { service: 'web', address: '127.0.0.1', port: 8081 });
  await verifier.authorize(early, ID);
  await rm(workloadPath(root, 'default', 'web-456'));
  const replay = await refused(verifier, early);
  assertRefused(replay, 'UNAUTHENTICATED', /revoked: workload instance default\/web-456 is not registered/);
  assert.equal(replay.expected, false, 'a stopped instance replayed is logged at info');
});

test('random strings and random edits of a valid token are never accepted and never throw otherwise', async (t) => {
  const { root, verifier, claims } = await setUp(t);
  const token = await mintWorkloadToken(root, claims);
  await fc.assert(
    fc.asyncProperty(
      fc.oneof(
        fc.string({ maxLength: 300 }),
        fc.string({ unit: 'binary', maxLength: 200 }),
        fc.string({ maxLength: 200 }).map((s) => `tt1.${s}`),
        fc
          .tuple(fc.base64String({ maxLength: 200 }), fc.base64String({ maxLength: 60 }))
          .map(([a, b]) => `tt1.${a}.${b}`),
      ),
      async (garbage) => {
        const error = await refused(verifier, garbage);
        assert.equal(error.status, 'UNAUTHENTICATED');
      },
    ),
    { numRuns: 500 },
  );
  await fc.assert(
    fc.asyncProperty(
      fc.nat({ max: token.length - 1 }),
      fc.integer({ min: 32, max: 126 }),
      async (at, code) => {
        const edited = token.slice(0, at) + String.fromCharCode(code) + token.slice(at + 1);
        fc.pre(edited !== token);
        const error = await refused(verifier, edited);
        assert.equal(error.status, 'UNAUTHENTICATED');
      },
    ),
    { numRuns: 500 },
  );
});
