// A proxy told the control plane's identity (tap.controlPlaneIdentity: what the injector sets on
// Kubernetes) accepts mutual TLS on its admin listener: the control plane's tap client
// (src/control/tap/proxy-tap.ts) presents its certificate, checks the proxy's, and taps; a proxy
// that is someone else is refused by the client; a client whose certificate the trust anchors do
// not vouch for gets no answer; plain HTTP (probes, scrapers) is served as before. (Which caller may
// tap over that TLS is the route's decision: test/unit/tap.test.ts, with non-loopback peers.)
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { createCa, idOf, identityFor, issueLeaf, startMeshWorld } from '../helpers/mesh-pki.ts';
import { portOf } from '../helpers/running-proxy.ts';
import { openProxyTap, type TapCredentials } from '../../src/control/tap/proxy-tap.ts';

/** Taps `admin` over mTLS until the first exchange line, or its end: what came, and why it ended. */
function tapOnce(admin: string, credentials: TapCredentials, identity: string, send: () => void) {
  return new Promise<{ lines: Record<string, unknown>[]; error: string | null }>((resolve) => {
    const lines: Record<string, unknown>[] = [];
    const tap = openProxyTap(
      admin,
      '',
      {
        onObject: (o) => {
          lines.push(o);
          if (o.type === 'started') send();
          if (o.type === 'exchange') {
            tap.close();
            resolve({ lines, error: null });
          }
        },
        onEnd: (error) => resolve({ lines, error }),
      },
      { credentials, identity },
    );
  });
}

test('the control plane taps a proxy over mTLS on its admin listener', { timeout: 60_000 }, async (t) => {
  const world = await startMeshWorld();
  t.after(() => world.close());
  const app = http.createServer((_req, res) => res.end('ok'));
  await new Promise<void>((r) => app.listen(0, '127.0.0.1', r));
  t.after(() => app.close());
  const control = idOf('trellis-control', 'trellis');
  const server = await world.proxy({
    identity: await identityFor(world, 'web'),
    app: (app.address() as { port: number }).port,
    config: { tap: { controlPlaneIdentity: control } },
  });
  const admin = server.addresses.admin!;
  const controlLeaf = await issueLeaf(world.ca, control);
  const credentials: TapCredentials = {
    keyPem: controlLeaf.keyPem,
    chainPem: controlLeaf.certPem,
    trustAnchorsPem: world.ca.certPem,
  };
  const send = () => {
    http.get(`http://127.0.0.1:${portOf(server, 'inbound')}/over-tls`, (res) => res.resume());
  };

  const tapped = await tapOnce(admin, credentials, idOf('web'), send);
  assert.equal(tapped.error, null);
  assert.deepEqual(
    tapped.lines.map((l) => l.type),
    ['started', 'exchange'],
  );
  assert.equal(tapped.lines[1]!.path, '/over-tls');

  const wrongProxy = await tapOnce(admin, credentials, idOf('not-web'), send);
  assert.match(
    String(wrongProxy.error),
    /cannot connect: the proxy is spiffe:\/\/mesh\.test\/ns\/default\/sa\/web, expected/,
  );

  const stranger = await createCa('Someone Else');
  const strangerLeaf = await issueLeaf(stranger, control);
  const untrusted = await tapOnce(
    admin,
    { keyPem: strangerLeaf.keyPem, chainPem: strangerLeaf.certPem, trustAnchorsPem: world.ca.certPem },
    idOf('web'),
    send,
  );
  assert.notEqual(untrusted.error, null);
  assert.deepEqual(untrusted.lines, []);

  // Plain HTTP is served as before.
  const metrics = await fetch(`http://${admin}/metrics`);
  assert.equal(metrics.status, 200);
  assert.match(await metrics.text(), /trellis_tap_events_total 1/);
});
