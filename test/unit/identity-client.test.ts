// Tests for the proxy's identity client (src/proxy/identity/identity-client.ts) against a fake
// Identity gRPC server on 127.0.0.1 that issues real leaves with @peculiar/x509 from a test CA
// (anchor -> issuer -> leaf, lifetimes of 2 s): the first certificate, renewals with new keys and
// jittered times, backoff and recovery (UNAVAILABLE, UNAUTHENTICATED, a control plane that starts
// late, renewal failing past expiry), the token file re-read, answers it must refuse (certified.ts,
// also unit-tested directly), and close(). The pure scheduling rules (renewal.ts) get fast-check properties.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { generateKeyPairSync, webcrypto, X509Certificate, createPrivateKey } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import fc from 'fast-check';
import { loadIdentityApi, type ApiCertifyResponse } from '../../src/api/load.ts';
import { systemTimers, type Clock, type Timers } from '../../src/core/clock.ts';
import { createLogger, type Logger } from '../../src/core/log.ts';
import { seededRandom, type Random } from '../../src/core/random.ts';
import { EC_P256, x509 } from '../helpers/x509.ts';
import { BAD_CERTIFY_RESPONSE, certifiedKeyFromResponse } from '../../src/proxy/identity/certified.ts';
import { createCsr } from '../../src/proxy/identity/csr.ts';
import { createIdentityClient, IDENTITY_CLOSED } from '../../src/proxy/identity/identity-client.ts';
import type { CertifiedKey } from '../../src/proxy/identity/provider.ts';
import { backoffDelay } from '../../src/core/backoff.ts';
import { IDENTITY_BACKOFF, renewalTime } from '../../src/proxy/identity/renewal.ts';

const ID = 'spiffe://cluster.local/ns/default/sa/web';
const OTHER = 'spiffe://cluster.local/ns/default/sa/db';

// ---- a test CA ----

async function ecKeys() {
  return webcrypto.subtle.generateKey(EC_P256, true, ['sign', 'verify']);
}

async function makeCa(name: string) {
  const year = { notBefore: new Date(Date.now() - 3_600_000), notAfter: new Date(Date.now() + 86_400_000) };
  const caExtensions = async (publicKey: webcrypto.CryptoKey) => [
    new x509.BasicConstraintsExtension(true, undefined, true),
    new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
    await x509.SubjectKeyIdentifierExtension.create(publicKey),
  ];
  const anchorKeys = await ecKeys();
  const anchor = await x509.X509CertificateGenerator.createSelfSigned({
    name: `CN=${name} anchor`,
    keys: anchorKeys,
    signingAlgorithm: EC_P256,
    extensions: await caExtensions(anchorKeys.publicKey),
    ...year,
  });
  const issuerKeys = await ecKeys();
  const issuer = await x509.X509CertificateGenerator.create({
    subject: `CN=${name} issuer`,
    issuer: anchor.subject,
    publicKey: issuerKeys.publicKey,
    signingKey: anchorKeys.privateKey,
    signingAlgorithm: EC_P256,
    extensions: await caExtensions(issuerKeys.publicKey),
    ...year,
  });
  return { anchor, issuer, issuerKeys };
}
type Ca = Awaited<ReturnType<typeof makeCa>>;

const caA = await makeCa('A');
const caB = await makeCa('B');

interface LeafOptions {
  uris?: string[];
  lifetimeMs?: number;
  /** Another public key than the CSR's (SPKI DER). */
  publicKeySpki?: Buffer;
  notBefore?: Date;
}

/** A response for `csrDer`, issued by `ca`; notBefore is this second (X.509 keeps whole seconds). */
async function issue(ca: Ca, csrDer: Buffer, options: LeafOptions = {}): Promise<ApiCertifyResponse> {
  const csr = new x509.Pkcs10CertificateRequest(csrDer);
  const notBefore = options.notBefore ?? new Date(Math.floor(Date.now() / 1000) * 1000);
  const notAfter = new Date(notBefore.getTime() + (options.lifetimeMs ?? 2000));
  const leaf = await x509.X509CertificateGenerator.create({
    subject: '',
    issuer: ca.issuer.subject,
    publicKey:
      options.publicKeySpki === undefined ? csr.publicKey : new x509.PublicKey(options.publicKeySpki),
    signingKey: ca.issuerKeys.privateKey,
    signingAlgorithm: EC_P256,
    notBefore,
    notAfter,
    extensions: [
      new x509.SubjectAlternativeNameExtension(
        (options.uris ?? [ID]).map((value) => ({ type: 'url' as const, value })),
        true,
      ),
    ],
  });
  return {
    leafCertificate: Buffer.from(leaf.rawData),
    intermediateCertificates: [Buffer.from(ca.issuer.rawData)],
    validUntilMs: notAfter.getTime(),
    trustAnchorsPem: ca.anchor.toString('pem') + '\n',
  };
}

// ---- a fake Identity server ----

interface Seen {
  readonly at: number;
  readonly identity: string;
  readonly token: string;
  readonly csr: Buffer;
}
type Reply = { response: ApiCertifyResponse } | { error: { code: grpc.status; details: string } };
type Behaviour = (seen: Seen, n: number) => Promise<Reply>;

const issueNormally: Behaviour = async (seen) => ({ response: await issue(caA, seen.csr) });

async function startFakeCa(
  t: { after(fn: () => unknown): void },
  behaviour: Behaviour = issueNormally,
  port = 0,
) {
  const seen: Seen[] = [];
  const server = new grpc.Server();
  server.addService(loadIdentityApi().Identity.service, {
    Certify: (
      call: grpc.ServerUnaryCall<
        { identity: string; token: Buffer; certificateSigningRequest: Buffer },
        unknown
      >,
      callback: grpc.sendUnaryData<ApiCertifyResponse>,
    ) => {
      const s: Seen = {
        at: Date.now(),
        identity: call.request.identity,
        token: call.request.token.toString('utf8'),
        csr: call.request.certificateSigningRequest,
      };
      seen.push(s);
      behaviour(s, seen.length - 1).then(
        (reply) =>
          'error' in reply
            ? callback({ code: reply.error.code, details: reply.error.details })
            : callback(null, reply.response),
        (err: Error) => callback({ code: grpc.status.INTERNAL, details: err.message }),
      );
    },
  });
  const bound = await new Promise<number>((resolve, reject) =>
    server.bindAsync(`127.0.0.1:${port}`, grpc.ServerCredentials.createInsecure(), (err, p) =>
      err ? reject(err) : resolve(p),
    ),
  );
  t.after(() => server.forceShutdown());
  return { address: `127.0.0.1:${bound}`, port: bound, seen, server };
}

// ---- helpers ----

interface LogRecord {
  level: string;
  msg: string;
  [k: string]: unknown;
}
function captureLog(): { log: Logger; records: LogRecord[] } {
  const records: LogRecord[] = [];
  return { records, log: createLogger({ level: 'debug', write: (line) => records.push(JSON.parse(line)) }) };
}

/** Wall-clock time with real timers that records every timer (due time) and counts pending ones. */
function recordingClock(offset = { ms: 0 }) {
  const scheduled: { at: number; ms: number }[] = [];
  let pending = 0;
  const clock: Clock & Timers = {
    now: () => Date.now() + offset.ms,
    setTimeout(callback, ms) {
      scheduled.push({ at: Date.now() + offset.ms + ms, ms });
      pending++;
      let done = false;
      const finish = () => {
        if (!done) pending--;
        done = true;
      };
      const handle = systemTimers.setTimeout(() => {
        finish();
        callback();
      }, ms);
      return {
        cancel() {
          finish();
          handle.cancel();
        },
      };
    },
  };
  return { clock, scheduled, pending: () => pending };
}

/** A Random that records its draws. */
function recordingRandom(inner: Random): Random & { draws: number[] } {
  const draws: number[] = [];
  return {
    draws,
    next() {
      const x = inner.next();
      draws.push(x);
      return x;
    },
  };
}

async function waitFor(cond: () => boolean, what: string, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (let i = 0; i < 10_000 && !cond(); i++) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

function spkiOfCsr(csr: Buffer): string {
  return Buffer.from(new x509.Pkcs10CertificateRequest(csr).publicKey.rawData).toString('hex');
}

// ---- the client against the fake server ----

test('first certificate: a verified CSR for our ID and token, a chain leaf first, our key, ready()', async (t) => {
  const ca = await startFakeCa(t);
  const { log } = captureLog();
  const client = createIdentityClient({ address: ca.address, id: ID, token: 'tok-1', log });
  t.after(() => client.close());
  const changes: CertifiedKey[] = [];
  client.onChange((k) => changes.push(k));
  assert.equal(client.current(), null);
  assert.equal(client.id, ID);
  await client.ready();

  const key = client.current();
  assert.ok(key);
  assert.equal(ca.seen.length, 1);
  const [request] = ca.seen;
  assert.equal(request?.identity, ID);
  assert.equal(request?.token, 'tok-1');
  const csr = new x509.Pkcs10CertificateRequest(request!.csr);
  assert.equal(await csr.verify(), true);

  const chain = key.chainPem.match(/-----BEGIN CERTIFICATE-----[^-]+-----END CERTIFICATE-----/g) ?? [];
  assert.equal(chain.length, 2);
  const leaf = new X509Certificate(chain[0]!);
  assert.equal(leaf.subjectAltName, `URI:${ID}`);
  assert.equal(new X509Certificate(chain[1]!).subject, 'CN=A issuer');
  assert.equal(new X509Certificate(key.trustAnchorsPem).subject, 'CN=A anchor');
  assert.ok(leaf.checkPrivateKey(createPrivateKey(key.keyPem)), 'keyPem is the leaf key');
  assert.match(key.keyPem, /^-----BEGIN PRIVATE KEY-----\n/);
  assert.equal(key.notBeforeMs, leaf.validFromDate.getTime());
  assert.equal(key.expiresAtMs, leaf.validToDate.getTime());
  assert.equal(key.expiresAtMs - key.notBeforeMs, 2000);
  assert.deepEqual(changes, [key]);
  assert.equal(client.lastError(), null);
});

test('renewals: each at 70% ± 5% of the remaining lifetime, with a new key, onChange every time', async (t) => {
  const ca = await startFakeCa(t);
  const { log } = captureLog();
  const { clock, scheduled } = recordingClock();
  const random = recordingRandom(seededRandom(42));
  const client = createIdentityClient({ address: ca.address, id: ID, log, clock, random });
  t.after(() => client.close());
  const changes: CertifiedKey[] = [];
  client.onChange((k) => changes.push(k));
  await waitFor(() => changes.length >= 4, 'a first certificate and three renewals');
  client.close();

  // No failures: every timer is a renewal, one per certificate, drawn with one random number.
  assert.equal(scheduled.length, changes.length);
  assert.equal(random.draws.length, changes.length);
  for (let i = 0; i < changes.length; i++) {
    const key = changes[i]!;
    const at = scheduled[i]!.at;
    // Counted from when the leaf became usable: notBefore (whole seconds in X.509) or its arrival.
    const start = Math.max(key.notBeforeMs, at - scheduled[i]!.ms);
    const lifetime = key.expiresAtMs - start;
    const expected = start + lifetime * (0.7 + 0.05 * (2 * random.draws[i]! - 1));
    // `at` was computed from a second Date.now() reading: allow the few ms between the two.
    assert.ok(Math.abs(at - expected) < 50, `renewal ${i}: at ${at}, expected ${expected}`);
    assert.ok(at >= start + 0.65 * lifetime - 50 && at <= start + 0.75 * lifetime + 50);
    assert.ok(at < key.expiresAtMs);
    // The next request came no earlier than the renewal time (timers never fire early).
    if (i + 1 < ca.seen.length) assert.ok(ca.seen[i + 1]!.at >= at - 5, `request ${i + 1} came early`);
  }
  const keys = new Set(changes.map((k) => k.keyPem));
  assert.equal(keys.size, changes.length, 'a new private key every time');
  const csrKeys = new Set(ca.seen.map((s) => spkiOfCsr(s.csr)));
  assert.equal(csrKeys.size, ca.seen.length, 'a new public key in every CSR');
  assert.notEqual(random.draws[0], random.draws[1]);
});

test('backoff on UNAVAILABLE then UNAUTHENTICATED (100 ms, x2, equal jitter), then recovery', async (t) => {
  const lastErrors: (string | null)[] = [];
  const ca = await startFakeCa(t, async (seen, n) => {
    // `client` is assigned before the first request can arrive.
    lastErrors.push(client.lastError());
    if (n < 3) return { error: { code: grpc.status.UNAVAILABLE, details: 'no usable issuer' } };
    if (n < 5) return { error: { code: grpc.status.UNAUTHENTICATED, details: 'unknown token' } };
    return { response: await issue(caA, seen.csr, { lifetimeMs: 60_000 }) };
  });
  const { log, records } = captureLog();
  const { clock, scheduled } = recordingClock();
  const client = createIdentityClient({ address: ca.address, id: ID, log, clock, random: { next: () => 0 } });
  t.after(() => client.close());
  await client.ready();

  assert.equal(ca.seen.length, 6);
  // random 0: the lower end of each [ceiling/2, ceiling] window: 50, 100, 200, 400, 800.
  assert.deepEqual(
    scheduled.slice(0, 5).map((s) => s.ms),
    [50, 100, 200, 400, 800],
  );
  for (let i = 1; i < ca.seen.length; i++) {
    assert.ok(ca.seen[i]!.at - ca.seen[i - 1]!.at >= (scheduled[i - 1]!.ms as number) - 5);
  }
  assert.deepEqual(lastErrors, [
    null,
    'UNAVAILABLE: no usable issuer',
    'UNAVAILABLE: no usable issuer',
    'UNAVAILABLE: no usable issuer',
    'UNAUTHENTICATED: unknown token',
    'UNAUTHENTICATED: unknown token',
  ]);
  assert.equal(client.lastError(), null);
  // UNAVAILABLE is a warning; UNAUTHENTICATED within 5 s of start is expected: debug only.
  const warns = records.filter((r) => r.level === 'warn');
  assert.equal(warns.length, 3);
  assert.equal(warns[0]?.status, 'UNAVAILABLE');
  assert.equal(warns[0]?.error, 'no usable issuer');
  assert.equal(warns[0]?.retryInMs, 50);
  const debug = records.filter((r) => r.level === 'debug' && r.status === 'UNAUTHENTICATED');
  assert.equal(debug.length, 2);
  assert.ok(records.some((r) => r.level === 'info' && r.msg === 'identity: certificate issued'));
});

test('UNAUTHENTICATED later than 5 s after start is a warning', async (t) => {
  const offset = { ms: 0 };
  const ca = await startFakeCa(t, async () => {
    offset.ms = 6_000; // from the second failure on, the client is "6 s" old
    return { error: { code: grpc.status.UNAUTHENTICATED, details: 'token expired' } };
  });
  const { log, records } = captureLog();
  const { clock } = recordingClock(offset);
  const client = createIdentityClient({ address: ca.address, id: ID, log, clock, random: { next: () => 0 } });
  t.after(() => client.close());
  await waitFor(() => ca.seen.length >= 3 && records.filter((r) => r.status).length >= 3, 'three failures');
  client.close();
  assert.equal(client.current(), null);
  assert.equal(client.lastError(), 'UNAUTHENTICATED: token expired');
  const levels = records.filter((r) => r.status === 'UNAUTHENTICATED').map((r) => r.level);
  // The server moves the clock before answering, so even the first failure is seen at 6 s.
  assert.ok(
    levels.every((l) => l === 'warn'),
    levels.join(),
  );
});

test('a control plane that starts after the proxy: UNAVAILABLE retries, then the first certificate', async (t) => {
  // Find a free port, leave it closed for a while.
  const probe = await startFakeCa(t);
  const port = probe.port;
  probe.server.forceShutdown();
  const { log } = captureLog();
  const client = createIdentityClient({ address: `127.0.0.1:${port}`, id: ID, log, random: seededRandom(1) });
  t.after(() => client.close());
  await waitFor(() => client.lastError() !== null, 'a failure');
  assert.match(client.lastError()!, /^UNAVAILABLE: /);
  await new Promise((r) => setTimeout(r, 400));
  const ca = await startFakeCa(t, issueNormally, port);
  await client.ready();
  assert.equal(ca.seen.length, 1);
  assert.equal(client.lastError(), null);
});

test('the token file is read before every request (trimmed); an unreadable file is a retried failure', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'trellis-identity-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const tokenFile = join(dir, 'token');
  const ca = await startFakeCa(t);
  const { log } = captureLog();
  const client = createIdentityClient({
    address: ca.address,
    id: ID,
    tokenFile,
    log,
    random: { next: () => 0 },
  });
  t.after(() => client.close());
  await waitFor(() => client.lastError() !== null, 'the missing token file to be reported');
  assert.match(client.lastError()!, /cannot read the token file .*token: ENOENT/);
  assert.equal(ca.seen.length, 0);

  writeFileSync(tokenFile, 'token-one\n');
  await client.ready();
  writeFileSync(tokenFile, '  token-two \n');
  await waitFor(() => ca.seen.length >= 2, 'a renewal');
  assert.deepEqual(
    ca.seen.map((s) => s.token),
    ['token-one', 'token-two'],
  );
});

test('answers that are not for us are refused: the current credentials stay, and the client retries', async (t) => {
  // Request 0: a good 2 s leaf. Renewals 1-3: a leaf for another ID, one with an extra SAN, one for
  // another key. Request 4: good again.
  const wrong: (LeafOptions | null)[] = [
    null,
    { uris: [OTHER] },
    { uris: [ID, OTHER] },
    {
      publicKeySpki: generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey.export({
        type: 'spki',
        format: 'der',
      }),
    },
  ];
  const currentAtRequest: (CertifiedKey | null)[] = [];
  const ca = await startFakeCa(t, async (seen, n) => {
    currentAtRequest.push(client.current());
    return {
      response: await issue(caA, seen.csr, { ...(wrong[n] ?? {}), lifetimeMs: n === 0 ? 2000 : 60_000 }),
    };
  });
  const { log, records } = captureLog();
  const client = createIdentityClient({ address: ca.address, id: ID, log, random: { next: () => 0 } });
  t.after(() => client.close());
  const changes: CertifiedKey[] = [];
  client.onChange((k) => changes.push(k));
  await waitFor(() => changes.length >= 2, 'the first certificate and one good renewal');
  assert.equal(ca.seen.length, 5);
  const errors = records.filter((r) => r.level === 'warn').map((r) => String(r.error));
  assert.deepEqual(errors, [
    `Certify response: the leaf names ${OTHER}, not ${ID}`,
    `Certify response: the leaf names ${ID}, ${OTHER}, not ${ID}`,
    'Certify response: the leaf is for another public key than ours',
  ]);
  // While the bad answers came in, the first credentials stayed current.
  assert.deepEqual(currentAtRequest.slice(1), [changes[0], changes[0], changes[0], changes[0]]);
  assert.notEqual(changes[1]!.keyPem, changes[0]!.keyPem);
  assert.equal(client.current(), changes[1]);
  assert.equal(new X509Certificate(changes[1]!.chainPem).subjectAltName, `URI:${ID}`);
});

test('renewal failing past expiry: the failures become errors in the log; the last certificate stays', async (t) => {
  const ca = await startFakeCa(t, async (seen, n) =>
    n === 0
      ? { response: await issue(caA, seen.csr, { lifetimeMs: 2000 }) }
      : { error: { code: grpc.status.UNAVAILABLE, details: 'issuer expired' } },
  );
  const { log, records } = captureLog();
  const client = createIdentityClient({ address: ca.address, id: ID, log, random: { next: () => 0 } });
  t.after(() => client.close());
  await client.ready();
  const first = client.current();
  await waitFor(() => records.some((r) => r.level === 'error'), 'an error after expiry');
  const error = records.find((r) => r.level === 'error')!;
  assert.equal(error.msg, 'identity: the certificate has expired and renewing it fails; retrying');
  assert.equal(error.status, 'UNAVAILABLE');
  assert.ok(
    records.some((r) => r.level === 'warn' && r.status === 'UNAVAILABLE'),
    'warnings before expiry',
  );
  assert.equal(client.current(), first);
  assert.equal(client.lastError(), 'UNAVAILABLE: issuer expired');
});

test('close(): ready() rejects when no certificate came; no timer is left; a closed client stays quiet', async (t) => {
  const ca = await startFakeCa(t, async () => ({
    error: { code: grpc.status.UNAVAILABLE, details: 'down' },
  }));
  const { log } = captureLog();
  const { clock, pending } = recordingClock();
  const client = createIdentityClient({ address: ca.address, id: ID, log, clock });
  await waitFor(() => ca.seen.length >= 2, 'two attempts');
  client.close();
  client.close(); // idempotent
  await assert.rejects(client.ready(), (err: Error & { code?: string }) => err.code === IDENTITY_CLOSED);
  assert.equal(pending(), 0);
  const count = ca.seen.length;
  await new Promise((r) => setTimeout(r, 500));
  assert.equal(ca.seen.length, count, 'no request after close');
  assert.equal(pending(), 0);
});

/** Runs `code` (an ES module) in a child Node from the repository root; its exit code, or null. */
function runChild(
  code: string,
  args: string[],
  timeoutMs = 30_000,
): Promise<{ status: number | null; out: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--input-type=module', '-e', code, ...args], {
      cwd: new URL('../..', import.meta.url).pathname,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('exit', (status) => {
      clearTimeout(timer);
      resolve({ status, out });
    });
  });
}

test('close() leaves nothing running: a process that used the client exits by itself', async (t) => {
  // Odd requests fail (UNAVAILABLE), even ones get a 60 s leaf: the first child closes with a
  // renewal pending, the second while it is backing off. Neither calls process.exit.
  const ca = await startFakeCa(t, async (seen, n) =>
    n % 2 === 0
      ? { error: { code: grpc.status.UNAVAILABLE, details: 'flaky' } }
      : { response: await issue(caA, seen.csr, { lifetimeMs: 60_000 }) },
  );
  const url = (p: string) => JSON.stringify(new URL(p, import.meta.url).href);
  const code = `
import { silentLogger } from ${url('../../src/core/log.ts')};
import { createIdentityClient } from ${url('../../src/proxy/identity/identity-client.ts')};
const client = createIdentityClient({ address: process.argv[1], id: ${JSON.stringify(ID)}, log: silentLogger });
// The client's timers are unref'd (as all of Trellis's): a proxy's listeners keep it alive, here
// this interval does, until just before close().
const keepAlive = setInterval(() => {}, 1000);
if (process.argv[2] === 'after-ready') await client.ready();
else await new Promise((r) => setTimeout(r, 30));
clearInterval(keepAlive);
client.close();
console.log('closed', client.current() === null ? 'without' : 'with', 'a certificate');
`;
  const afterReady = await runChild(code, [ca.address, 'after-ready']);
  assert.equal(afterReady.status, 0, afterReady.out);
  assert.match(afterReady.out, /closed with a certificate/);
  const early = await runChild(code, [ca.address, 'early']);
  assert.equal(early.status, 0, early.out);
  assert.match(early.out, /closed without a certificate/);
});

// ---- certified.ts: the checks on an answer, directly ----

async function answerFor(
  options: LeafOptions & { ca?: Ca; anchors?: string; intermediates?: Buffer[] } = {},
) {
  const keys = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const response = await issue(options.ca ?? caA, createCsr(keys, ID), { lifetimeMs: 60_000, ...options });
  if (options.anchors !== undefined) response.trustAnchorsPem = options.anchors;
  if (options.intermediates !== undefined) response.intermediateCertificates = options.intermediates;
  const expected = {
    id: ID,
    publicKeyDer: keys.publicKey.export({ type: 'spki', format: 'der' }),
    keyPem: keys.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string,
    nowMs: Date.now(),
  };
  return {
    expected,
    run: () =>
      certifiedKeyFromResponse(
        {
          leafCertificate: Buffer.from(response.leafCertificate as Buffer),
          intermediateCertificates: (response.intermediateCertificates ?? []).map((b) =>
            Buffer.from(b as Buffer),
          ),
          validUntilMs: Number(response.validUntilMs),
          trustAnchorsPem: String(response.trustAnchorsPem),
        },
        expected,
      ),
  };
}

function refused(message: RegExp) {
  return (err: unknown) =>
    (err as { code?: string }).code === BAD_CERTIFY_RESPONSE && message.test((err as Error).message);
}

test('certified: a good answer gives the chain leaf first and the anchors; a rotation bundle is accepted', async () => {
  const { run, expected } = await answerFor({
    anchors: caB.anchor.toString('pem') + '\n' + caA.anchor.toString('pem') + '\n',
  });
  const key = run();
  assert.equal(key.keyPem, expected.keyPem);
  assert.equal(key.chainPem.match(/BEGIN CERTIFICATE/g)?.length, 2);
  assert.equal(key.trustAnchorsPem.match(/BEGIN CERTIFICATE/g)?.length, 2);
  assert.equal(key.expiresAtMs - key.notBeforeMs, 60_000);
});

test('certified: refuses the wrong SAN, key, expiry, chain, anchors, or garbage', async () => {
  const otherKey = generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey.export({
    type: 'spki',
    format: 'der',
  });
  const cases: [Parameters<typeof answerFor>[0], RegExp][] = [
    [{ uris: [OTHER] }, /the leaf names spiffe:\/\/cluster.local\/ns\/default\/sa\/db, not/],
    [{ uris: [] }, /the leaf names no URI, not/],
    [{ publicKeySpki: otherKey }, /another public key than ours/],
    [{ notBefore: new Date(Date.now() - 120_000) }, /the leaf expired at/],
    [{ ca: caB, anchors: caA.anchor.toString('pem') }, /chain does not lead to any of the trust anchors/],
    [
      { intermediates: [Buffer.from(caB.issuer.rawData)] },
      /certificate 0 of the chain \(0 = leaf\) was not issued by certificate 1/,
    ],
    [{ intermediates: [] }, /chain does not lead to any of the trust anchors/],
    [{ anchors: '' }, /trust_anchors_pem holds no PEM certificate/],
    [
      { intermediates: [Buffer.from('junk')] },
      /intermediate_certificates\[0\] is not a DER X.509 certificate/,
    ],
  ];
  for (const [options, message] of cases) {
    const { run } = await answerFor(options);
    assert.throws(run, refused(message), String(message));
  }
  assert.throws(
    () =>
      certifiedKeyFromResponse(
        {
          leafCertificate: Buffer.alloc(0),
          intermediateCertificates: [],
          validUntilMs: 0,
          trustAnchorsPem: '',
        },
        { id: ID, publicKeyDer: otherKey, keyPem: '', nowMs: Date.now() },
      ),
    refused(/leaf_certificate is empty/),
  );
});

// ---- renewal.ts: the schedule, as properties ----

test('property: the renewal time is 65..75% of the way from max(notBefore, now) to expiry, before expiry', () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 0, max: 2 ** 42 }),
      fc.integer({ min: 1000, max: 400 * 86_400_000 }),
      fc.double({ min: 0, max: 1, noNaN: true }),
      fc.double({ min: 0, max: 1, noNaN: true }),
      (notBefore, lifetime, draw, nowFraction) => {
        const notAfter = notBefore + lifetime;
        const now = notBefore + lifetime * nowFraction * 0.999;
        const at = renewalTime(notBefore, notAfter, now, { next: () => draw });
        const start = Math.max(notBefore, now);
        const windowStart = start + 0.65 * (notAfter - start);
        const windowEnd = start + 0.75 * (notAfter - start);
        const eps = Math.max(lifetime * 1e-9, notAfter * 8 * Number.EPSILON); // floating-point slack
        if (at < now || at >= notAfter) return false;
        // Inside the window, unless the window has passed (then soon: at most 100 ms from now).
        return (
          (at >= windowStart - eps && at <= windowEnd + eps) || (windowEnd <= now + eps && at - now <= 100)
        );
      },
    ),
    { numRuns: 2000 },
  );
  // A misbehaving Random (1, NaN, out of range) still never schedules past expiry.
  for (const draw of [1, 1.5, -1, Number.NaN]) {
    const at = renewalTime(0, 1000, 0, { next: () => draw });
    assert.ok(at >= 650 - 1e-9 && at <= 750 + 1e-9, `draw ${draw}: ${at}`);
  }
});

test('property: backoff doubles from 100 ms to a 10 s cap, each delay within [ceiling/2, ceiling]', () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 0, max: 1000 }),
      fc.double({ min: 0, max: 1, noNaN: true, maxExcluded: true }),
      (failures, draw) => {
        const ceiling = Math.min(10_000, 100 * 2 ** failures);
        const delay = backoffDelay(failures, IDENTITY_BACKOFF, { next: () => draw });
        return delay >= ceiling / 2 && delay <= ceiling;
      },
    ),
    { numRuns: 2000 },
  );
  const zero = { next: () => 0 };
  assert.deepEqual(
    [0, 1, 2, 3, 6, 7, 50].map((f) => backoffDelay(f, IDENTITY_BACKOFF, zero)),
    [50, 100, 200, 400, 3200, 5000, 5000],
  );
});
