// End-to-end: the malformed-request corpus (test/fixtures/malformed-corpus.ts) against the real
// proxy process. One proxy for the whole corpus, one raw connection per case, its inbound listener
// in front of a raw upstream that records every byte and answers each request it can parse (with
// simple code of its own, not llhttp). Each case checks the statuses the client gets, that
// rejections carry trellis-proxy-error and close the connection, that nothing of a rejected
// request reaches the upstream, and that what is forwarded arrives in one unambiguous form.
// Afterwards the proxy must still serve, be alive, and count its bad-request errors.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { once } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import { startProxyProcess } from '../helpers/proxy-process.ts';
import { MALFORMED_CORPUS, type MalformedCase } from '../fixtures/malformed-corpus.ts';

const UPSTREAM_RESPONSE = 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Upstream: 1\r\n\r\nok';

interface UpstreamRequest {
  readonly line: string;
  readonly headers: [string, string][];
}

/** Takes one request off the front of buf: the request and its size, null (incomplete) or 'bad'. */
function takeRequest(buf: Buffer): { req: UpstreamRequest; used: number } | null | 'bad' {
  const headEnd = buf.indexOf('\r\n\r\n');
  if (headEnd === -1) return null;
  const [line = '', ...fieldLines] = buf.subarray(0, headEnd).toString('latin1').split('\r\n');
  if (!/^[!#$%&'*+.^_`|~0-9A-Za-z-]+ \S+ HTTP\/1\.1$/.test(line)) return 'bad';
  const headers = fieldLines.map((l): [string, string] => {
    const colon = l.indexOf(':');
    return [l.slice(0, colon).toLowerCase(), l.slice(colon + 1).trim()];
  });
  let pos = headEnd + 4;
  const cl = headers.find(([n]) => n === 'content-length');
  if (headers.some(([n]) => n === 'transfer-encoding')) {
    while (true) {
      const lineEnd = buf.indexOf('\r\n', pos);
      if (lineEnd === -1) return null;
      const size = parseInt(buf.subarray(pos, lineEnd).toString('latin1'), 16);
      if (Number.isNaN(size)) return 'bad';
      pos = lineEnd + 2;
      if (size === 0) {
        const end =
          buf.subarray(pos, pos + 2).toString() === '\r\n' ? pos + 2 : buf.indexOf('\r\n\r\n', pos) + 4;
        if (end < pos + 2 || end > buf.length) return null;
        return { req: { line, headers }, used: end };
      }
      if (buf.length < pos + size + 2) return null;
      pos += size + 2;
    }
  }
  if (cl !== undefined) pos += Number(cl[1]);
  return pos <= buf.length ? { req: { line, headers }, used: pos } : null;
}

/** What the proxy may send upstream: one Host, at most one framing field, TE only "chunked". */
function framingViolations(r: UpstreamRequest): string[] {
  const count = (name: string) => r.headers.filter(([n]) => n === name).length;
  const te = r.headers.filter(([n]) => n === 'transfer-encoding');
  const out: string[] = [];
  if (count('content-length') > 1) out.push('more than one Content-Length');
  if (te.length > 1 || (te.length === 1 && te[0]![1] !== 'chunked'))
    out.push('Transfer-Encoding not exactly chunked');
  if (te.length > 0 && count('content-length') > 0) out.push('both Content-Length and Transfer-Encoding');
  if (count('host') !== 1) out.push(`${count('host')} Host fields`);
  return out;
}

async function startUpstream() {
  const seen = { bytes: [] as Buffer[], requests: [] as UpstreamRequest[], violations: [] as string[] };
  const sockets = new Set<net.Socket>();
  const server = net.createServer({ allowHalfOpen: true }, (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => {});
    socket.on('end', () => socket.end());
    let buf = Buffer.alloc(0);
    socket.on('data', (d: Buffer) => {
      seen.bytes.push(d);
      buf = Buffer.concat([buf, d]);
      for (let r = takeRequest(buf); r !== null && r !== 'bad'; r = takeRequest(buf)) {
        seen.requests.push(r.req);
        seen.violations.push(...framingViolations(r.req));
        buf = buf.subarray(r.used);
        socket.write(UPSTREAM_RESPONSE);
      }
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    port: (server.address() as net.AddressInfo).port,
    reset() {
      seen.bytes = [];
      seen.requests = [];
      seen.violations = [];
    },
    received: () => ({
      bytes: Buffer.concat(seen.bytes),
      requests: [...seen.requests],
      violations: [...seen.violations],
    }),
    close() {
      for (const s of sockets) s.destroy();
      return new Promise<void>((r) => server.close(() => r()));
    },
  };
}

interface ClientResponse {
  readonly status: number;
  readonly headers: Map<string, string>;
}

/** The complete responses in buf (all of them are Content-Length framed here). */
function parseResponses(buf: Buffer): ClientResponse[] {
  const out: ClientResponse[] = [];
  let pos = 0;
  while (true) {
    const headEnd = buf.indexOf('\r\n\r\n', pos);
    if (headEnd === -1) return out;
    const [line = '', ...lines] = buf.subarray(pos, headEnd).toString('latin1').split('\r\n');
    const headers = new Map(
      lines.map((l) => [l.slice(0, l.indexOf(':')).toLowerCase(), l.slice(l.indexOf(':') + 1).trim()]),
    );
    const end = headEnd + 4 + Number(headers.get('content-length') ?? 0);
    if (end > buf.length) return out;
    out.push({ status: Number(line.split(' ')[1]), headers });
    pos = end;
  }
}

/** Sends one case on a fresh connection; waits for the answers, the close, or a deadline. */
async function runCase(c: MalformedCase, port: number) {
  // Half-open like a hostile client: it may keep sending after the proxy has closed its side.
  const socket = net.connect({ port, host: '127.0.0.1', allowHalfOpen: true });
  await once(socket, 'connect');
  let received = Buffer.alloc(0);
  let ended = false;
  socket.on('data', (d: Buffer) => (received = Buffer.concat([received, d])));
  socket.on('end', () => (ended = true));
  socket.on('close', () => (ended = true));
  socket.on('error', () => {});
  for (let i = 0; i < c.send.length && !socket.destroyed; i++) {
    if (i > 0 && c.gapMs !== undefined) await sleep(c.gapMs);
    if (!socket.writableEnded) socket.write(Buffer.from(c.send[i]!, 'latin1'));
  }
  if (c.opaque || c.send.length === 0) socket.end();
  const deadline = Date.now() + 3000;
  while (Date.now() < deadline && !ended) {
    if (!c.closes && parseResponses(received).length >= c.statuses.length) break;
    await sleep(20);
  }
  await sleep(150); // anything that leaks to the upstream has arrived by now
  socket.destroy();
  return { responses: parseResponses(received), received, ended };
}

const REASON_BY_STATUS: Record<number, string> = {
  400: 'bad-request',
  501: 'bad-request',
  505: 'bad-request',
  414: 'request-header-too-large',
  431: 'request-header-too-large',
  408: 'idle-timeout',
};

test('malformed HTTP/1 corpus against the real proxy', { timeout: 240_000 }, async (t) => {
  assert.ok(MALFORMED_CORPUS.length >= 45, `the corpus has ${MALFORMED_CORPUS.length} cases`);
  const upstream = await startUpstream();
  t.after(() => upstream.close());
  const proxy = await startProxyProcess({
    args: ['--app-port', String(upstream.port)],
    configYaml: 'timeouts:\n  requestHeadMs: 1000\n',
  });
  t.after(() => proxy.stop());
  const inbound = proxy.port('inbound');

  for (const c of MALFORMED_CORPUS) {
    await t.test(c.name, { todo: c.todo ?? false }, async () => {
      upstream.reset();
      const r = await runCase(c, inbound);
      const up = upstream.received();
      const sent = Buffer.from(c.send.join(''), 'latin1');
      assert.deepEqual(
        r.responses.map((x) => x.status),
        c.statuses,
        `client got ${JSON.stringify(r.received.toString('latin1').slice(0, 300))}`,
      );
      for (const res of r.responses) {
        if (res.status >= 400)
          assert.equal(res.headers.get('trellis-proxy-error'), REASON_BY_STATUS[res.status]);
        else assert.equal(res.headers.get('x-upstream'), '1', 'a success comes from the upstream');
      }
      assert.equal(
        r.ended,
        c.closes,
        c.closes ? 'the proxy must close the connection' : 'the connection stays open',
      );
      if (c.opaque) assert.deepEqual(up.bytes, sent, 'opaque bytes are forwarded untouched');
      else {
        assert.equal(
          up.requests.length,
          c.upstreamRequests,
          `upstream got ${JSON.stringify(up.bytes.toString('latin1').slice(0, 300))}`,
        );
        assert.deepEqual(up.violations, [], 'forwarded requests are framed unambiguously');
        for (const req of up.requests) assert.match(req.line, / HTTP\/1\.1$/);
      }
      if (c.upstreamSees === 'nothing')
        assert.equal(up.bytes.length, 0, `upstream got ${JSON.stringify(up.bytes.toString('latin1'))}`);
      const upText = up.bytes.toString('latin1');
      for (const s of c.neverUpstream ?? [])
        assert.ok(!upText.includes(s), `${JSON.stringify(s)} reached the upstream`);
      for (const s of c.upstreamGets ?? [])
        assert.ok(upText.includes(s), `${JSON.stringify(s)} did not reach the upstream`);
    });
  }

  await t.test('afterwards the proxy still serves, is alive, and counted bad requests', async () => {
    upstream.reset();
    const r = await runCase(
      {
        name: 'normal',
        send: [`GET /normal HTTP/1.1\r\nHost: app.test\r\n\r\n`],
        statuses: [200],
        upstreamRequests: 1,
        closes: false,
      },
      inbound,
    );
    assert.deepEqual(
      r.responses.map((x) => x.status),
      [200],
    );
    assert.equal(upstream.received().requests.length, 1);
    assert.equal(proxy.proc.exitCode, null);
    assert.equal(proxy.proc.signalCode, null);
    const badRequests = MALFORMED_CORPUS.filter(
      (c) => c.todo === undefined && c.statuses.some((s) => REASON_BY_STATUS[s] === 'bad-request'),
    ).length;
    const counted = await proxy.metric('trellis_proxy_errors_total', {
      direction: 'inbound',
      reason: 'bad-request',
    });
    assert.ok(
      counted >= badRequests,
      `bad-request errors counted: ${counted}, expected at least ${badRequests}`,
    );
    assert.ok(
      (await proxy.metric('trellis_proxy_errors_total', { reason: 'request-header-too-large' })) >= 4,
    );
  });
});
