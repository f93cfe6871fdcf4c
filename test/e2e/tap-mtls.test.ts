// The proxy's mTLS tap listener (src/proxy/admin/tap-listener.ts) on loopback: an in-process
// proxy with `tap.listen` on 127.0.0.1 and a test CA's identity. A caller with a certificate of
// the allowed identity gets the proxy's events; another identity of the same CA gets 403; no
// certificate, or one of another CA, fails the handshake; a proxy without a certificate yet
// refuses; each refusal is counted by reason. A renewed certificate serves new connections. The
// listener's own bounds (handshake and request time, connections at once) are measured on a
// listener started with small ones.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import net from 'node:net';
import tls from 'node:tls';
import { once } from 'node:events';
import { certifiedKey, createCa, issueLeaf, testIdentity, type TestCa } from '../helpers/mesh-pki.ts';
import { validateProxyConfig } from '../../src/proxy/config.ts';
import { startProxy, type RunningProxy } from '../../src/proxy/proxy.ts';
import { silentLogger } from '../../src/core/log.ts';
import { controlPlaneId } from '../../src/core/spiffe.ts';
import { portOf } from '../helpers/running-proxy.ts';
import { startTapListener } from '../../src/proxy/admin/tap-listener.ts';
import { TapHub } from '../../src/proxy/telemetry/tap-hub.ts';

const TRUST_DOMAIN = 'mesh.test';
const CONTROL_ID = controlPlaneId(TRUST_DOMAIN);
const PROXY_ID = `spiffe://${TRUST_DOMAIN}/ns/shop/sa/web`;

interface Caller {
  readonly key?: string;
  readonly cert?: string;
}

interface TapAnswer {
  /** The status line's code, or null when the connection failed before one came. */
  readonly status: number | null;
  /** What came, head and body, until `waitFor` matched, the connection ended or `ms` passed. */
  readonly text: string;
  readonly error: string | null;
  readonly serverCert: tls.PeerCertificate | null;
}

/** GET /tap over TLS as `caller`; reads until `waitFor` is in the text, the end, or `ms`. */
async function tapOver(
  port: number,
  ca: TestCa,
  caller: Caller,
  waitFor = '\n\n',
  ms = 3000,
  onStarted?: () => void,
): Promise<TapAnswer> {
  const socket = tls.connect({
    host: '127.0.0.1',
    port,
    ca: ca.certPem,
    ...(caller.key !== undefined ? { key: caller.key, cert: caller.cert } : {}),
    // The proxy's certificate names a SPIFFE ID, not a host name.
    checkServerIdentity: () => undefined,
  });
  let text = '';
  let error: string | null = null;
  let serverCert: tls.PeerCertificate | null = null;
  socket.on('secureConnect', () => {
    serverCert = socket.getPeerCertificate();
    socket.write('GET /tap HTTP/1.1\r\nhost: proxy\r\n\r\n');
  });
  socket.setEncoding('utf8');
  await new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, ms);
    socket.on('data', (d: string) => {
      text += d;
      if (onStarted !== undefined && text.includes('"type":"started"')) {
        onStarted();
        onStarted = undefined;
      }
      if (text.includes(waitFor)) {
        clearTimeout(timer);
        resolve();
      }
    });
    socket.on('error', (err) => (error = err.message));
    socket.on('close', () => {
      clearTimeout(timer);
      resolve();
    });
  });
  socket.destroy();
  const m = /^HTTP\/1\.1 (\d{3})/.exec(text);
  return { status: m === null ? null : Number(m[1]), text, error, serverCert };
}

/** The proxy's trellis_tap_refused_total by reason, from its admin /metrics. */
async function refused(proxy: RunningProxy): Promise<Record<string, number>> {
  const page = await (await fetch(`http://127.0.0.1:${portOf(proxy, 'admin')}/metrics`)).text();
  const out: Record<string, number> = {};
  for (const m of page.matchAll(/^trellis_tap_refused_total\{reason="([^"]+)"\} (\d+)$/gm)) {
    if (m[2] !== '0') out[m[1]!] = Number(m[2]);
  }
  return out;
}

async function helloApp(t: { after(fn: () => unknown): void }): Promise<number> {
  const app = createServer((req, res) => res.end(`hello ${req.url}\n`));
  app.listen(0, '127.0.0.1');
  await once(app, 'listening');
  t.after(() => app.close());
  return (app.address() as net.AddressInfo).port;
}

test('mTLS tap listener: the allowed identity taps; another identity, no certificate, another CA and a proxy without a certificate are refused and counted', async (t) => {
  const ca = await createCa();
  const otherCa = await createCa('Another Root');
  const [serverLeaf, controlLeaf, strangerLeaf, foreignControlLeaf] = await Promise.all([
    issueLeaf(ca, PROXY_ID),
    issueLeaf(ca, CONTROL_ID),
    issueLeaf(ca, `spiffe://${TRUST_DOMAIN}/ns/shop/sa/attacker`),
    issueLeaf(otherCa, CONTROL_ID),
  ]);
  const identity = testIdentity(PROXY_ID, certifiedKey(serverLeaf, ca.certPem));
  const appPort = await helloApp(t);
  const proxy = await startProxy(
    validateProxyConfig({
      inboundListen: '127.0.0.1:0',
      outboundListen: '127.0.0.1:0',
      adminListen: '127.0.0.1:0',
      appPort,
      identity: { trustDomain: TRUST_DOMAIN },
      // The default allowed identity: the control plane's of the trust domain.
      tap: { listen: '127.0.0.1:0' },
      log: { level: 'off' },
    }),
    silentLogger,
    undefined,
    { identity, authorizer: null },
  );
  t.after(() => proxy.shutdown(0));
  const tapPort = portOf(proxy, 'tap');

  // The control plane's certificate: the stream starts, and a request to the proxy's inbound
  // listener arrives as an event.
  const control = { key: controlLeaf.keyPem, cert: controlLeaf.certPem };
  let started!: () => void;
  const startedNow = new Promise<void>((resolve) => (started = resolve));
  const streaming = tapOver(tapPort, ca, control, '"type":"exchange"', 10_000, started);
  // The request goes once the tap has started (or the tap ended without starting: the asserts
  // below then say why).
  await Promise.race([startedNow, streaming]);
  assert.equal(
    await (await fetch(`http://127.0.0.1:${portOf(proxy, 'inbound')}/seen`)).text(),
    'hello /seen\n',
  );
  const good = await streaming;
  assert.equal(good.status, 200, good.text + (good.error ?? ''));
  assert.match(good.text, /\{"type":"started"/);
  assert.match(good.text, /"type":"exchange".*"path":"\/seen"/);
  assert.ok(
    good.serverCert?.subjectaltname?.includes(PROXY_ID),
    'the proxy presents its workload certificate',
  );

  // Another identity of the same trust anchors: verified, but not allowed.
  const stranger = await tapOver(tapPort, ca, { key: strangerLeaf.keyPem, cert: strangerLeaf.certPem });
  assert.equal(stranger.status, 403, stranger.text);
  assert.match(stranger.text, /spiffe:\/\/mesh\.test\/ns\/shop\/sa\/attacker may not tap this proxy/);
  assert.doesNotMatch(stranger.text, /"type":"started"/);

  // No client certificate: the handshake fails (TLS alert "certificate required").
  const anonymous = await tapOver(tapPort, ca, {});
  assert.equal(anonymous.status, null, anonymous.text);
  assert.match(anonymous.error ?? '', /certificate required/);

  // The allowed identity, but from another CA: the handshake fails.
  const foreign = await tapOver(tapPort, ca, {
    key: foreignControlLeaf.keyPem,
    cert: foreignControlLeaf.certPem,
  });
  assert.equal(foreign.status, null, foreign.text);
  assert.doesNotMatch(foreign.text, /started/);

  assert.deepEqual(await refused(proxy), { identity: 1, handshake: 2 });

  // A renewed certificate serves the next connection.
  const renewed = await issueLeaf(ca, PROXY_ID);
  identity.set(certifiedKey(renewed, ca.certPem));
  const after = await tapOver(tapPort, ca, control, '"type":"started"');
  assert.equal(after.status, 200);
  assert.notEqual(after.serverCert?.serialNumber, good.serverCert?.serialNumber);
  assert.equal(
    after.serverCert?.serialNumber,
    new (await import('node:crypto')).X509Certificate(renewed.certPem).serialNumber,
  );
});

test('mTLS tap listener: a proxy without a certificate yet refuses; --tap-listen without an identity is a configuration error', async (t) => {
  const ca = await createCa();
  const controlLeaf = await issueLeaf(ca, CONTROL_ID);
  const proxy = await startProxy(
    validateProxyConfig({
      inboundListen: '127.0.0.1:0',
      outboundListen: '127.0.0.1:0',
      adminListen: '127.0.0.1:0',
      identity: { trustDomain: TRUST_DOMAIN },
      tap: { listen: '127.0.0.1:0', allowedIdentities: [CONTROL_ID] },
      log: { level: 'off' },
    }),
    silentLogger,
    undefined,
    { identity: testIdentity(PROXY_ID, null), authorizer: null },
  );
  t.after(() => proxy.shutdown(0));
  const answer = await tapOver(portOf(proxy, 'tap'), ca, {
    key: controlLeaf.keyPem,
    cert: controlLeaf.certPem,
  });
  assert.equal(answer.status, null);
  assert.deepEqual(await refused(proxy), { 'no-certificate': 1 });

  await assert.rejects(
    startProxy(
      validateProxyConfig({
        adminListen: '127.0.0.1:0',
        tap: { listen: '127.0.0.1:0' },
        log: { level: 'off' },
      }),
      silentLogger,
      undefined,
      { identity: null, authorizer: null },
    ),
    /tap\.listen.*needs the proxy to have an identity/,
  );
});

test('mTLS tap listener bounds: a silent handshake and a silent request are cut off in time; connections at once are bounded, an authenticated tap is not shed', async (t) => {
  const ca = await createCa();
  const [serverLeaf, controlLeaf] = await Promise.all([issueLeaf(ca, PROXY_ID), issueLeaf(ca, CONTROL_ID)]);
  const hub = new TapHub({ ownIdentity: () => PROXY_ID, attach: () => {}, log: silentLogger });
  const limited: string[] = [];
  const listener = await startTapListener({
    listen: { host: '127.0.0.1', port: 0 },
    identity: testIdentity(PROXY_ID, certifiedKey(serverLeaf, ca.certPem)),
    allowed: new Set([CONTROL_ID]),
    hub,
    log: silentLogger,
    handshakeTimeoutMs: 300,
    requestTimeoutMs: 300,
    maxConnections: 4,
    maxPerPeer: 8,
    onConnectionLimit: (limit, action) => limited.push(`${limit}/${action}`),
  });
  t.after(() => listener.close());
  const port = listener.address.port;

  // A peer that connects and sends nothing is closed once the handshake time is up.
  const started = performance.now();
  const silent = net.connect(port, '127.0.0.1');
  silent.on('error', () => {});
  await once(silent, 'close');
  const silentMs = performance.now() - started;
  assert.ok(silentMs >= 250 && silentMs < 3000, `closed after ${silentMs} ms`);

  // An authenticated caller that never sends its request is closed after the request time.
  const idle = tls.connect({
    host: '127.0.0.1',
    port,
    ca: ca.certPem,
    key: controlLeaf.keyPem,
    cert: controlLeaf.certPem,
    checkServerIdentity: () => undefined,
  });
  idle.on('error', () => {});
  await once(idle, 'secureConnect');
  const idleStart = performance.now();
  await once(idle, 'close');
  const idleMs = performance.now() - idleStart;
  assert.ok(idleMs >= 200 && idleMs < 3000, `closed after ${idleMs} ms`);

  // A live tap, then more silent connections than the listener holds: the silent ones make room
  // for each other (shed, counted), the tap stays.
  let tapStarted!: () => void;
  const tapStartedNow = new Promise<void>((resolve) => (tapStarted = resolve));
  const tap = tapOver(
    port,
    ca,
    { key: controlLeaf.keyPem, cert: controlLeaf.certPem },
    'never',
    3000,
    tapStarted,
  );
  await Promise.race([tapStartedNow, tap]);
  assert.equal(hub.size, 1);
  const flood = Array.from({ length: 8 }, () => {
    const s = net.connect(port, '127.0.0.1');
    s.on('error', () => {});
    return s;
  });
  // The listener sheds the silent ones as each newcomer arrives (bounded wait for five of them).
  for (let i = 0; i < 100 && limited.filter((l) => l === 'listener/shed').length < 5; i++) {
    await new Promise((r) => setTimeout(r, 20));
  }
  assert.equal(hub.size, 1, 'the authenticated tap is still attached');
  assert.ok(limited.filter((l) => l === 'listener/shed').length >= 5, limited.join(','));
  for (const s of flood) s.destroy();
  const answer = await tap;
  assert.equal(answer.status, 200);
  assert.match(answer.text, /"type":"started"/);
  assert.ok(hub.metrics().includes('trellis_tap_refused_total{reason="handshake"}'));
});
