// End-to-end streaming through the real proxy process: 100 MB uploaded (the upstream counts it)
// and 100 MB downloaded (the upstream generates it), over HTTP/1.1, HTTP/2 and an opaque TCP
// destination, each with a slow reader at first. Backpressure is checked twice: while the reader
// stalls, the writer can only get a bounded amount ahead (socket buffers and flow-control windows,
// not the body); and the proxy's resident memory, sampled from /proc/<pid>/status during the
// transfer, stays below a fixed ceiling and far below the body size.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import http2 from 'node:http2';
import net from 'node:net';
import { once } from 'node:events';
import type { Readable, Writable } from 'node:stream';
import { startProxyProcess, type ProxyProcess } from '../helpers/proxy-process.ts';
import { startUpstream, type Upstream } from '../helpers/http-matrix.ts';

const MB = 1024 * 1024;
const SIZE = 100 * MB;
const PAUSE_MS = 800; // the reader reads nothing at first...
const SLOW_BYTES = 8 * MB; // ...then reads slowly up to here, then at full speed
const MAX_AHEAD = 48 * MB; // what the writer may get ahead of a stalled reader (buffers, windows)
// The proxy runs from the TypeScript sources here (type stripping costs ~18 MB over dist/, see
// bin/trellis): 106-112 MB at rest (2026-12-07; ~90 MB when this was written, before routes,
// tracing and the rest were loaded), plus the garbage allowance below. 160 MB left that allowance
// only ~50 MB, and the slow-reader upload peaked at 154-158 MB in passing runs.
const RSS_CEILING = 196 * MB;
// Peak RSS above the pre-transfer RSS. Dead socket-read buffers are freed only when V8 collects
// their wrappers, which it forces once ~64 MB of external memory piles up: so garbage can take up
// to that much, whatever the body size (a 300 MB transfer peaks no higher than a 100 MB one), plus
// the buffers in flight and the allocator's slack: a clean-clone run measured 71 MB of growth
// (74.6 -> 145.6 MB), others 50-58. Still well under the 100 MB body a proxy that buffered it
// whole would add.
const RSS_GROWTH = 84 * MB;
const T = { timeout: 40_000 };

// As bin/trellis runs the proxy in production: a small young generation.
const PROXY_ENV = { ...process.env, NODE_OPTIONS: '--max-semi-space-size=2' };

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function vmRss(pid: number): number {
  const m = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m === null ? 0 : Number(m[1]) * 1024;
}

/** Samples a process's RSS until stopped; returns the starting and peak values. */
function sampleRss(pid: number): () => { start: number; peak: number } {
  const start = vmRss(pid);
  let peak = start;
  const timer = setInterval(() => (peak = Math.max(peak, vmRss(pid))), 20);
  return () => {
    clearInterval(timer);
    peak = Math.max(peak, vmRss(pid));
    return { start, peak };
  };
}

const CHUNK = Buffer.alloc(64 * 1024, 0x61);

/** Writes `total` bytes honouring backpressure; `sent.n` counts them as they are accepted. */
async function writeAll(w: Writable, total: number, sent: { n: number }): Promise<void> {
  while (sent.n < total) {
    const n = Math.min(CHUNK.length, total - sent.n);
    const ok = w.write(n === CHUNK.length ? CHUNK : CHUNK.subarray(0, n));
    sent.n += n;
    if (!ok) await once(w, 'drain');
  }
}

/** Reads to the end: nothing for PAUSE_MS (then calls onStallEnd), slowly up to SLOW_BYTES, then fast. */
async function readSlowly(r: Readable, onStallEnd: () => void): Promise<number> {
  r.pause();
  await sleep(PAUSE_MS);
  onStallEnd();
  let n = 0;
  let nextBreak = MB;
  r.on('data', (d: Buffer) => {
    n += d.length;
    if (n < SLOW_BYTES && n >= nextBreak) {
      nextBreak += MB;
      r.pause();
      setTimeout(() => r.resume(), 25);
    }
  });
  const ended = once(r, 'end');
  r.resume();
  await ended;
  return n;
}

interface Outcome {
  bytes: number;
  /** Bytes the writer had handed over when the stalled reader started reading. */
  aheadAtStallEnd: number;
}

interface Transport {
  upload(): Promise<Outcome>;
  download(): Promise<Outcome>;
}

function checkTransfer(getProxy: () => ProxyProcess, run: () => Promise<Outcome>) {
  return async (t: { diagnostic(message: string): void }) => {
    const proxy = getProxy();
    const stop = sampleRss(proxy.proc.pid!);
    const outcome = await run().finally(() => stop());
    const rss = stop();
    assert.equal(outcome.bytes, SIZE);
    assert.ok(outcome.aheadAtStallEnd > 0, 'nothing was written before the reader started');
    assert.ok(
      outcome.aheadAtStallEnd < MAX_AHEAD,
      `the writer got ${(outcome.aheadAtStallEnd / MB).toFixed(1)} MB ahead of a stalled reader`,
    );
    const info = `RSS ${(rss.start / MB).toFixed(1)} MB -> peak ${(rss.peak / MB).toFixed(1)} MB`;
    t.diagnostic(
      `${info}; writer ahead of the stalled reader: ${(outcome.aheadAtStallEnd / MB).toFixed(1)} MB`,
    );
    assert.ok(rss.peak < RSS_CEILING, info);
    assert.ok(rss.peak - rss.start < RSS_GROWTH, info);
  };
}

// ---- HTTP/1.1 and HTTP/2: the upstream is a node:http / node:http2 server ------------------

function httpTransport(
  protocol: 'http1' | 'h2',
  getProxy: () => ProxyProcess,
  getUp: () => Upstream,
): Transport {
  const request = (method: string, path: string, headers: Record<string, string | number>) => {
    if (protocol === 'http1') {
      const req = http.request({
        host: '127.0.0.1',
        port: getProxy().port('inbound'),
        method,
        path,
        headers,
        agent: false,
      });
      const response = new Promise<Readable>((resolve, reject) => {
        req.on('response', resolve);
        req.on('error', reject);
      });
      return { body: req as Writable, response, close: () => req.destroy() };
    }
    const session = http2.connect(`http://127.0.0.1:${getProxy().port('inbound')}`);
    session.on('error', () => {});
    const stream = session.request(
      { ':method': method, ':path': path, ...headers },
      { endStream: method === 'GET' },
    );
    const response = new Promise<Readable>((resolve, reject) => {
      stream.on('response', () => resolve(stream));
      stream.on('error', reject);
    });
    return { body: stream as Writable, response, close: () => session.destroy() };
  };
  return {
    async upload() {
      const sent = { n: 0 };
      let ahead = 0;
      let received = 0;
      getUp().handler = (req, res) => {
        req.pause();
        setTimeout(() => {
          ahead = sent.n;
          req.on('data', (d: Buffer) => (received += d.length));
          req.on('end', () => res.end(String(received)));
          req.resume();
        }, PAUSE_MS);
      };
      const r = request('POST', '/upload', { 'content-length': SIZE });
      try {
        await writeAll(r.body, SIZE, sent);
        r.body.end();
        const res = await r.response;
        let text = '';
        for await (const d of res) text += String(d);
        return { bytes: Number(text), aheadAtStallEnd: ahead };
      } finally {
        r.close();
      }
    },
    async download() {
      const sent = { n: 0 };
      getUp().handler = (_req, res) => {
        res.writeHead(200, { 'content-type': 'application/octet-stream' }); // streamed: chunked on HTTP/1
        writeAll(res as unknown as Writable, SIZE, sent).then(
          () => res.end(),
          () => {},
        );
      };
      const r = request('GET', '/download', {});
      if (protocol === 'http1') r.body.end();
      try {
        const res = await r.response;
        let ahead = 0;
        const bytes = await readSlowly(res, () => (ahead = sent.n));
        return { bytes, aheadAtStallEnd: ahead };
      } finally {
        r.close();
      }
    },
  };
}

for (const protocol of ['http1', 'h2'] as const) {
  describe(`${protocol} through the inbound listener`, () => {
    let up: Upstream;
    let proxy: ProxyProcess;
    before(async () => {
      up = await startUpstream(protocol);
      proxy = await startProxyProcess({ args: ['--app-port', String(up.port)], env: PROXY_ENV });
      // One small exchange first, so that lazily loaded code (node:http2) is already in the RSS.
      up.handler = (_req, res) => res.end('warm');
      await warmUp(protocol, proxy);
    });
    after(async () => {
      await proxy?.stop();
      await up?.close();
    });
    const t = httpTransport(
      protocol,
      () => proxy,
      () => up,
    );
    test(
      'upload of 100 MB with a slow upstream reader',
      T,
      checkTransfer(
        () => proxy,
        () => t.upload(),
      ),
    );
    test(
      'download of 100 MB with a slow client reader',
      T,
      checkTransfer(
        () => proxy,
        () => t.download(),
      ),
    );
  });
}

async function warmUp(protocol: 'http1' | 'h2', proxy: ProxyProcess): Promise<void> {
  if (protocol === 'http1') {
    const res = await fetch(`http://127.0.0.1:${proxy.port('inbound')}/warm`);
    await res.text();
    return;
  }
  const session = http2.connect(`http://127.0.0.1:${proxy.port('inbound')}`);
  try {
    const s = session.request({ ':path': '/warm' });
    s.resume();
    await once(s, 'end');
  } finally {
    session.destroy();
  }
}

// ---- opaque TCP: a destination listener bound for a raw TCP server --------------------------

describe('opaque TCP destination', () => {
  let server: net.Server;
  let proxy: ProxyProcess;
  const state = { sent: { n: 0 }, ahead: 0 };
  before(async () => {
    // The first byte says what to do: 'U' = count what follows and answer the count; 'D' = send SIZE bytes.
    server = net.createServer((s) => {
      s.on('error', () => {});
      s.once('readable', () => {
        const first = s.read(1) as Buffer | null;
        if (first?.toString() === 'U') {
          s.pause();
          setTimeout(() => {
            state.ahead = state.sent.n;
            let received = 0;
            s.on('data', (d: Buffer) => (received += d.length));
            s.on('end', () => s.end(String(received)));
            s.resume();
          }, PAUSE_MS);
        } else {
          writeAll(s, SIZE, state.sent).then(
            () => s.end(),
            () => {},
          );
        }
      });
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const port = (server.address() as net.AddressInfo).port;
    proxy = await startProxyProcess({
      env: PROXY_ENV,
      configYaml: `destinations: [{listen: "127.0.0.1:0", target: "127.0.0.1:${port}", protocol: opaque}]\n`,
    });
  });
  after(async () => {
    await proxy?.stop();
    await new Promise((r) => server?.close(r));
  });
  const connect = async () => {
    const addr = proxy.addresses['destination-0']!;
    const s = net.connect(Number(addr.slice(addr.lastIndexOf(':') + 1)), '127.0.0.1');
    await once(s, 'connect');
    return s;
  };

  test(
    'upload of 100 MB with a slow upstream reader',
    T,
    checkTransfer(
      () => proxy,
      async () => {
        state.sent = { n: 0 };
        const s = await connect();
        try {
          s.write('U');
          await writeAll(s, SIZE, state.sent);
          s.end();
          let text = '';
          for await (const d of s) text += String(d);
          return { bytes: Number(text), aheadAtStallEnd: state.ahead };
        } finally {
          s.destroy();
        }
      },
    ),
  );

  test(
    'download of 100 MB with a slow client reader',
    T,
    checkTransfer(
      () => proxy,
      async () => {
        state.sent = { n: 0 };
        const s = await connect();
        try {
          s.write('D');
          let ahead = 0;
          const bytes = await readSlowly(s, () => (ahead = state.sent.n));
          return { bytes, aheadAtStallEnd: ahead };
        } finally {
          s.destroy();
        }
      },
    ),
  );
});
