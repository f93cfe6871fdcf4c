// MeshCredentials' outbound TLS sessions: kept per key and per peer, least recently used dropped
// past MAX_TLS_SESSIONS, and forgotten on request.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MAX_TLS_SESSIONS, MeshCredentials } from '../../src/proxy/mesh/credentials.ts';
import type { CertifiedKey, WorkloadIdentity } from '../../src/proxy/identity/provider.ts';

function key(n: number): CertifiedKey {
  return { keyPem: `k${n}`, chainPem: `c${n}`, trustAnchorsPem: 'a', notBeforeMs: 0, expiresAtMs: 1 };
}

const identity: WorkloadIdentity = {
  id: 'spiffe://t/ns/a/sa/b',
  current: () => null,
  ready: () => Promise.resolve(),
  onChange: () => () => {},
  close: () => {},
};

test('TLS sessions are kept per key and peer, bounded, least recently used dropped first', () => {
  const c = new MeshCredentials(identity);
  const k1 = key(1);
  const k2 = key(2);
  const s = (n: number) => Buffer.from(`session-${n}`);
  c.rememberSession(k1, 'p0', s(0));
  assert.equal(c.session(k2, 'p0'), undefined, 'another key of ours has no session');
  assert.equal(c.session(k1, 'p1'), undefined);
  c.rememberSession(k1, 'p0', s(1));
  assert.deepEqual(c.session(k1, 'p0'), s(1), 'the latest session of a peer is kept');
  for (let i = 1; i < MAX_TLS_SESSIONS; i++) c.rememberSession(k1, `p${i}`, s(i));
  // Full: p0 was used before p1, so p0 is the oldest; using it again makes p1 the oldest.
  assert.ok(c.session(k1, 'p0'));
  c.rememberSession(k1, 'extra', s(9999));
  assert.equal(c.session(k1, 'p1'), undefined, 'the least recently used is dropped');
  assert.ok(c.session(k1, 'p0'));
  assert.ok(c.session(k1, 'extra'));
  c.forgetSession(k1, 'p0');
  assert.equal(c.session(k1, 'p0'), undefined);
  c.close();
});
