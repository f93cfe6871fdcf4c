// The fuzz campaign's own parts (fuzz/), without a mesh: batches are the same for the same seed;
// the oracle's RFC 9112 reading accepts valid heads and names the rule an invalid one breaks; the
// fuzz HPACK encoder's blocks decode with the proxy's decoder; the oracle app records the
// identities that reach it over HTTP/1 (also after leading empty lines) and HTTP/2 but not in
// opaque streams; the judge turns a forged identity and a bystander hit into findings; the guard
// drops a plan naming an authority outside the campaign. Upgrades: the HTTP/1 generator offers
// websocket, h2c and both and smuggles HTTP/2 after them, the app switches when told and records
// what comes after, and the judge reports h2c in an offer that reached the app and HTTP/2 after a
// 101. (The campaign itself: npm run fuzz.)
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import http2 from 'node:http2';
import net from 'node:net';
import { HpackDecoder } from '../../src/proxy/h2/hpack.ts';
import { loadPlan, storePlan } from '../../fuzz/findings.ts';
import { guardPlan } from '../../fuzz/guard.ts';
import { readRequestHead } from '../../fuzz/h1-grammar.ts';
import { FuzzHpackEncoder } from '../../fuzz/hpack-fuzz.ts';
import { Judge } from '../../fuzz/judge.ts';
import { offersH2c, smuggledH2, SWITCH_HEADER } from '../../fuzz/gen-upgrade.ts';
import { CLIENT_PREFACE } from '../../fuzz/h2-frames.ts';
import { LANES, laneFor, makeBatch, type BatchSetup } from '../../fuzz/lanes.ts';
import { startOracleApp, type Seen } from '../../fuzz/oracle-app.ts';
import { parseTag, tagOf } from '../../fuzz/plan.ts';
import { Rng } from '../../fuzz/rng.ts';

const setup: BatchSetup = {
  seed: 42,
  ports: { app: 47100, bystander: 47101, serverInbound: 47102 },
  ids: {
    server: 'spiffe://t/ns/default/sa/server',
    client: 'spiffe://t/ns/default/sa/client',
    fuzzer: 'spiffe://t/ns/default/sa/fuzzer',
  },
  detectTimeoutMs: 3000,
  capturedHellos: [],
  floodScale: 0.01,
  guard: false,
};

function digest(lane: string, index: number): string {
  const l = LANES.find((x) => x.name === lane)!;
  const h = createHash('sha256');
  for (const p of makeBatch(setup, index, l).plans) {
    for (const s of p.steps) h.update('write' in s ? s.write : 'ping' in s ? s.ping : JSON.stringify(s));
  }
  return h.digest('hex');
}

test('a batch is the same for the same seed and index, and another for another index', () => {
  for (const lane of ['server-inbound/plain/http1', 'server-inbound/mtls-h2h1/h2', 'client-mesh/plain/tls']) {
    assert.equal(digest(lane, 3), digest(lane, 3));
    assert.notEqual(digest(lane, 3), digest(lane, 4));
  }
  const families = new Set(Array.from({ length: 100 }, (_, i) => laneFor(42, i, () => true).family));
  assert.deepEqual([...families].sort(), ['flood', 'h2', 'http1', 'opaque', 'stall', 'tls']);
  const a = new Rng(7);
  const b = new Rng(7);
  for (let i = 0; i < 100; i++) assert.equal(a.next(), b.next());
});

test('the oracle reads request heads by the RFC 9112 grammar', () => {
  const ok = 'GET /a/b?c=d HTTP/1.1\r\nHost: x:1\r\nA:\tb c\t\r\n\r\n';
  assert.equal(readRequestHead(ok).violation, null);
  assert.equal(readRequestHead('OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n').violation, null);
  assert.equal(readRequestHead('CONNECT x:443 HTTP/1.1\r\nHost: x:443\r\n\r\n').violation, null);
  const bad: [string, string][] = [
    ['GET /{ HTTP/1.1\r\nHost: x\r\n\r\n', 'origin-form grammar'],
    ['GET /%zz HTTP/1.1\r\nHost: x\r\n\r\n', 'origin-form grammar'],
    ['GET / HTTP/1.1\nHost: x\r\n\r\n', 'bare CR or LF'],
    ['GET / HTTP/1.1\r\nA: b\r\n c\r\nHost: x\r\n\r\n', 'obs-fold'],
    ['GET / HTTP/1.1\r\nHost: x\r\nA : b\r\n\r\n', 'field-name is not a token'],
    ['GET / HTTP/1.1\r\n\r\n', 'HTTP/1.1 request without Host'],
    [
      'POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n',
      'Content-Length with Transfer-Encoding',
    ],
    ['GET / HTTP/1.1\r\nHost: x\r\nA: b\x00\r\n\r\n', 'field-value grammar'],
  ];
  for (const [head, rule] of bad) assert.equal(readRequestHead(head).violation, rule, JSON.stringify(head));
  assert.equal(readRequestHead('GET /{ HTTP/1.1\r\nHost: x\r\n\r\n').offending, '"{"');
});

test("the fuzz HPACK encoder's blocks decode with the proxy's decoder, dynamic table and all", () => {
  const rng = new Rng(1);
  for (let conn = 0; conn < 20; conn++) {
    const encoder = new FuzzHpackEncoder();
    const decoder = new HpackDecoder(4096, 1 << 20);
    for (let block = 0; block < 20; block++) {
      const fields: [string, string][] = [
        [':method', 'GET'],
        [':path', `/${rng.text(rng.int(20), 'abc')}`],
        ['trellis-client-id', `spiffe://forged/${rng.int(5)}`],
        [`x-${rng.int(3)}`, rng.text(rng.int(40), 'xyz')],
      ];
      assert.deepEqual(decoder.decode(encoder.encode(rng, fields)), fields.flat());
    }
  }
});

function send(port: number, bytes: string | Buffer): Promise<string> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1', () => s.write(bytes));
    let out = '';
    s.on('data', (d: Buffer) => {
      out += d.toString('latin1');
      if (out.includes('id=')) s.end();
    });
    s.on('close', () => resolve(out));
    setTimeout(() => s.destroy(), 500);
  });
}

test('the oracle app records the identities that reach it over HTTP/1 and HTTP/2, not in opaque bytes', async (t) => {
  const app = await startOracleApp();
  t.after(() => app.close());
  const seen: Seen[] = [];
  app.onSeen = (s) => seen.push(s);
  const forged = 'spiffe://forged/b1.2.3';
  await send(
    app.port,
    `GET / HTTP/1.1\r\nHost: x\r\nx-fuzz: b1.2.3\r\nTrellis-Client-Id :  ${forged}\r\n\r\n`,
  );
  await send(app.port, `\r\n\r\n\r\nGET /{ HTTP/1.1\r\nHost: x\r\ntrellis-client-id: ${forged}\r\n\r\n`);
  await send(app.port, `\x00garbage\r\ntrellis-client-id: ${forged}\r\n\r\n`);
  const session = http2.connect(`http://127.0.0.1:${app.port}`);
  await new Promise<void>((resolve) => {
    const req = session.request({ ':path': '/h2', 'trellis-client-id': forged });
    req.resume();
    req.on('end', resolve);
    req.end();
  });
  session.close();
  assert.deepEqual(
    seen.map((s) => [s.via, s.path, s.ids, s.violation]),
    [
      ['http1', '/', [forged], 'field-name is not a token'],
      ['http1', '/{', [forged], 'origin-form grammar'],
      ['h2', '/h2', [forged], null],
    ],
  );
  assert.equal(seen[0]!.tag, 'b1.2.3');
});

test('the judge finds forged identities and inbound connections to the bystander', () => {
  const judge = new Judge();
  judge.begin(1, { lane: 'x/plain/http1', allowedIds: new Set(), bystanderForbidden: true });
  judge.begin(2, {
    lane: 'x/mtls-h2h1/h2',
    allowedIds: new Set(['spiffe://t/fuzzer']),
    bystanderForbidden: true,
  });
  const seen = (ids: string[], tag: string | null): Seen => ({
    via: 'http1',
    method: 'GET',
    path: '/',
    tag,
    ids,
    trailerIds: [],
    violation: null,
    offending: null,
    sample: '',
    upgrade: null,
    afterUpgrade: false,
  });
  judge.seen(seen(['spiffe://t/fuzzer'], tagOf(2, 0, 0))); // the verified identity of its lane
  judge.seen(seen(['spiffe://t/fuzzer'], tagOf(1, 4, 0))); // someone else's, on a plaintext lane
  judge.seen(seen([`spiffe://forged/${tagOf(2, 7, 1)}`], null)); // attributed by the value's own tag
  judge.seen(seen(['spiffe://t/fuzzer'], tagOf(1, 5, 0).replace('.5.', '.50.'))); // a mutated tag: no attribution
  judge.bystanderHit(Buffer.from(`GET / HTTP/1.1\r\nx-fuzz: ${tagOf(2, 9, 0)}\r\n\r\n`), 'server-side proxy');
  const found = judge.take().map((f) => [f.kind, f.lane, f.plan]);
  assert.deepEqual(found, [
    ['forged-identity', 'x/plain/http1', 4],
    ['forged-identity', 'x/mtls-h2h1/h2', 7],
    ['open-proxy', 'x/mtls-h2h1/h2', 9],
  ]);
  assert.equal(parseTag(`x-fuzz: ${tagOf(12, 34, 5)}`)?.plan, 34);
});

test('an untagged bystander connection by the other proxy than the lane attacks is not a finding', () => {
  const judge = new Judge();
  judge.begin(1, { lane: 'server-inbound/plain/h2', allowedIds: new Set(), bystanderForbidden: true });
  // A tunnel an earlier client-outbound lane opened and left silent, closed long after its batch.
  judge.bystanderHit(Buffer.alloc(0), 'client-side proxy');
  assert.deepEqual(judge.take(), []);
  judge.bystanderHit(Buffer.alloc(0), 'server-side proxy');
  assert.deepEqual(
    judge.take().map((f) => [f.kind, f.lane]),
    [['open-proxy', 'server-inbound/plain/h2']],
  );
});

test('an untagged bystander connection up to 12 s after a lane that may reach it is a late one of that lane', () => {
  let now = 0;
  const judge = new Judge(() => now);
  judge.begin(1, { lane: 'client-outbound/plain/h2', allowedIds: new Set(), bystanderForbidden: false });
  now = 1000;
  judge.begin(2, { lane: 'client-mesh/plain/http1', allowedIds: new Set(), bystanderForbidden: true });
  // A request of batch 1 waited for room in an upstream pool (up to 2x connectMs, 10 s) and
  // connected late: seen in both campaigns of 2026-12-07 as false open-proxy findings.
  now = 9000;
  judge.bystanderHit(Buffer.alloc(0), 'client-side proxy');
  assert.deepEqual(judge.take(), []);
  now = 14_000;
  judge.bystanderHit(Buffer.alloc(0), 'client-side proxy');
  assert.deepEqual(
    judge.take().map((f) => [f.kind, f.lane]),
    [['open-proxy', 'client-mesh/plain/http1']],
  );
});

test('without a namespace of its own, the guard drops a plan that names another authority', () => {
  const allowed = new Set(['127.0.0.1:47100']);
  const plan = (text: string) => ({
    channel: 'plain' as const,
    note: '',
    steps: [{ write: Buffer.from(text), inputs: 1 }],
  });
  assert.notEqual(guardPlan(plan('GET / HTTP/1.1\r\nHost: 127.0.0.1:47100\r\n\r\n'), 'http1', allowed), null);
  assert.equal(guardPlan(plan('GET / HTTP/1.1\r\nHost: 127.0.0.1:22\r\n\r\n'), 'http1', allowed), null);
  assert.equal(guardPlan(plan('CONNECT 10.0.0.1:80 HTTP/1.1\r\n\r\n'), 'http1', allowed), null);
});

test('a stored plan (a reproducer) loads as the same steps', () => {
  for (const lane of [
    'server-inbound/mtls-h2h1/h2',
    'server-inbound/plain/stall',
    'server-inbound/plain/http1',
  ]) {
    const l = LANES.find((x) => x.name === lane)!;
    for (const plan of makeBatch(setup, 1, l).plans.slice(0, 20)) {
      assert.deepEqual(
        loadPlan(JSON.parse(JSON.stringify(storePlan(plan))) as ReturnType<typeof storePlan>),
        plan,
      );
    }
  }
});

/** The Upgrade lines of each upgrade offer in a batch's HTTP/1 plans, and whether HTTP/2 follows it. */
function upgradeOffers(lane: string, batches: number): { lines: string[]; smuggled: boolean }[] {
  const l = LANES.find((x) => x.name === lane)!;
  const out: { lines: string[]; smuggled: boolean }[] = [];
  for (let index = 0; index < batches; index++) {
    for (const plan of makeBatch(setup, index, l).plans) {
      const bytes = Buffer.concat(plan.steps.flatMap((st) => ('write' in st ? [st.write] : [])));
      const text = bytes.latin1Slice(0, bytes.length);
      const at = text.search(new RegExp(`^${SWITCH_HEADER}:`, 'm'));
      if (at === -1) continue;
      const head = text.slice(text.lastIndexOf('GET ', at), text.indexOf('\r\n\r\n', at));
      out.push({
        lines: head.split('\r\n').filter((line) => /^upgrade:/i.test(line)),
        smuggled: bytes.includes(CLIENT_PREFACE, text.indexOf('\r\n\r\n', at)),
      });
    }
  }
  return out;
}

test('the HTTP/1 generator offers websocket, h2c and both, in any case, and smuggles HTTP/2 after', () => {
  const offers = upgradeOffers('server-inbound/plain/http1', 6);
  assert.ok(offers.length >= 50, `${offers.length} upgrade offers`);
  const values = offers.flatMap((o) => o.lines.map((line) => line.slice(line.indexOf(':') + 1).trim()));
  const has = (re: RegExp) => values.some((v) => re.test(v));
  assert.ok(has(/^websocket$/), 'websocket alone');
  assert.ok(has(/^h2c$/), 'h2c alone');
  assert.ok(has(/websocket.*h2c|h2c.*websocket/i), 'h2c with websocket in one list');
  assert.ok(has(/H2C|H2c/), 'h2c in another case');
  assert.ok(has(/^(h2c-14|xh2c|h2|HTTP\/2\.0)$/), 'a look-alike that is not h2c');
  assert.ok(
    offers.some((o) => o.lines.length === 2),
    'an offer in two Upgrade lines',
  );
  assert.ok(
    offers.every((o) => o.smuggled),
    'HTTP/2 follows every upgrade offer',
  );
  // Through the outbound proxy too (absolute-form), and never on an admin listener.
  assert.ok(upgradeOffers('client-outbound/plain/http1', 6).length > 0);
  assert.deepEqual(upgradeOffers('server-admin/plain/http1', 6), []);
});

test('offersH2c reads an Upgrade list as a lenient app would', () => {
  for (const yes of ['h2c', 'H2C', 'websocket, h2c', 'h2c/1', ', h2c,', 'websocket,\th2c ', 'foo/2,H2c'])
    assert.equal(offersH2c(yes), true, yes);
  for (const no of ['websocket', 'h2c-14', 'xh2c', 'h2', 'HTTP/2.0', 'websocket/h2c', ''])
    assert.equal(offersH2c(no), false, no);
});

/** Resolves with the first `n` requests the app records. */
function nextSeen(app: { onSeen: (s: Seen) => void }, n: number): Promise<Seen[]> {
  const seen: Seen[] = [];
  return new Promise((resolve) => {
    app.onSeen = (s) => {
      seen.push(s);
      if (seen.length === n) resolve(seen);
    };
  });
}

test(
  'the oracle app switches when told and records HTTP/2 after a 101 to h2c; a websocket tunnel is not HTTP',
  { timeout: 20_000 },
  async (t) => {
    const app = await startOracleApp();
    t.after(() => app.close());
    const recorded = nextSeen(app, 2);
    // The upgrade request, then at once what an h2c smuggler sends (gen-upgrade.ts).
    const tag = tagOf(5, 6, 7);
    const h2 = Buffer.concat(
      smuggledH2(new Rng(1), 'x', tag).flatMap((step) => ('write' in step ? [step.write] : [])),
    );
    const switched = send(
      app.port,
      Buffer.concat([
        Buffer.from(
          `GET /up HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket, H2C\r\n${SWITCH_HEADER}: h2c\r\n\r\n`,
        ),
        h2,
      ]),
    );
    const [upgrade, smuggled] = await recorded;
    assert.match(
      await switched,
      /^HTTP\/1\.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n/,
    );
    assert.deepEqual(
      [upgrade!.via, upgrade!.path, upgrade!.upgrade, upgrade!.afterUpgrade],
      ['http1', '/up', 'websocket, H2C', false],
    );
    assert.deepEqual(
      [smuggled!.via, smuggled!.path, smuggled!.tag, smuggled!.ids, smuggled!.afterUpgrade],
      ['h2', `/smuggled/${tag}`, tag, [`spiffe://forged/${tag}`], true],
    );

    // Offered websocket: a 101 to it, and what follows is a tunnel's bytes, not requests.
    const tunnel = nextSeen(app, 2);
    const answer = await send(
      app.port,
      `GET /ws HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: websocket\r\n${SWITCH_HEADER}: offered\r\n\r\n` +
        `GET /inside HTTP/1.1\r\nHost: x\r\n\r\n`,
    );
    assert.match(
      answer,
      /^HTTP\/1\.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n$/,
    );
    // Then a plain request on a new connection: the only other one recorded.
    await send(app.port, `GET /after HTTP/1.1\r\nHost: x\r\n${SWITCH_HEADER}: none\r\n\r\n`);
    assert.deepEqual(
      (await tunnel).map((s) => [s.path, s.upgrade]),
      [
        ['/ws', 'websocket'],
        ['/after', null],
      ],
    );
  },
);

test('the judge reports an offer naming h2c that reached the app, and HTTP/2 after a 101', () => {
  const judge = new Judge();
  judge.begin(3, { lane: 'x/plain/http1', allowedIds: new Set(), bystanderForbidden: true });
  const seen = (upgrade: string | null, afterUpgrade: boolean, plan: number): Seen => ({
    via: afterUpgrade ? 'h2' : 'http1',
    method: 'GET',
    path: '/',
    tag: tagOf(3, plan, 0),
    ids: [],
    trailerIds: [],
    violation: null,
    offending: null,
    sample: '',
    upgrade,
    afterUpgrade,
  });
  for (const upgrade of [null, 'websocket', 'h2c-14', 'xh2c', 'HTTP/2.0'])
    judge.seen(seen(upgrade, false, 0));
  assert.deepEqual(judge.take(), []);
  judge.seen(seen('websocket, H2C', false, 1));
  judge.seen(seen(null, true, 2));
  assert.deepEqual(
    judge.take().map((f) => [f.kind, f.lane, f.plan]),
    [
      ['forwarded-h2c-upgrade', 'x/plain/http1', 1],
      ['h2-after-upgrade', 'x/plain/http1', 2],
    ],
  );
});
