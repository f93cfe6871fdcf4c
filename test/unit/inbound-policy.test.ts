// InboundPolicy (src/proxy/mesh/inbound-policy.ts) with a scripted authorizer: a request path with
// dot-segments must be allowed as sent and as resolved, at first and again after each policy
// change (an upgraded connection that began on "/public/../admin" is closed once "/admin" is no
// longer allowed, even though "/public/*" still is).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import type net from 'node:net';
import { InboundPolicy } from '../../src/proxy/mesh/inbound-policy.ts';
import type { Decision, InboundAuthorizer } from '../../src/proxy/policy/types.ts';
import { ProxyMetrics } from '../../src/proxy/telemetry/metrics.ts';
import { silentLogger } from '../../src/core/log.ts';

/** An authorizer that allows the path prefixes in `allowed` (changed by the test, then announced). */
function scripted(allowed: Set<string>) {
  const listeners = new Set<() => void>();
  const decide = (ok: boolean): Decision =>
    ({
      allowed: ok,
      server: 'default/web',
      policy: ok ? 'default/allow' : 'default:deny',
      audited: false,
    }) as Decision;
  const authorizer = {
    checkConnection: () => decide(true),
    checkRequest: (_port: number, _peer: unknown, r: { path: string }) =>
      decide([...allowed].some((prefix) => r.path.startsWith(prefix))),
    protocolOf: () => null,
    onChange(listener: () => void) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    close() {},
  } as unknown as InboundAuthorizer;
  return { authorizer, changed: () => listeners.forEach((l) => l()) };
}

function fakeSocket(): net.Socket & { destroyedByPolicy: boolean } {
  const s = new EventEmitter() as unknown as net.Socket & { destroyedByPolicy: boolean };
  s.destroyedByPolicy = false;
  (s as unknown as { destroy(): void }).destroy = () => {
    s.destroyedByPolicy = true;
    s.emit('close');
  };
  return s;
}

test('a dot-segment path is judged as resolved at first and after a policy change', () => {
  const allowed = new Set(['/public/', '/admin']);
  const { authorizer, changed } = scripted(allowed);
  const policy = new InboundPolicy({
    authorizer,
    clientIdHeader: 'trellis-client-id',
    metrics: new ProxyMetrics(),
    log: silentLogger,
  });
  const peer = [null, '127.0.0.1'] as const;
  assert.equal(policy.checkRequest(8080, ...peer, 'GET', '/public/../admin?x=1'), null);
  const socket = fakeSocket();
  policy.watchUpgrade(socket, 8080, ...peer, 'GET', '/public/../admin?x=1');

  allowed.delete('/admin'); // "/public/../admin" as sent still matches "/public/"
  changed();
  assert.equal(socket.destroyedByPolicy, true, 'the upgraded connection stayed open');
  assert.equal(
    policy.checkRequest(8080, ...peer, 'GET', '/public/../admin'),
    'forbidden: path has dot-segments',
  );
  assert.equal(policy.checkRequest(8080, ...peer, 'GET', '/public/x'), null);
  policy.close();
});
