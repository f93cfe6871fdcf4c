// Limit hits of the own HTTP/2 are counted and logged without flooding the log: through the
// trellis-h2h1/1 inbound (a CONTINUATION flood becomes one count under its limit, and the queue
// budget knows the peer by its identity), and the reporter's one line per interval.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { LogFields, Logger } from '../../src/core/log.ts';
import { Flag, FrameType } from '../../src/proxy/h2/frames.ts';
import { LOG_THROTTLE_INTERVAL_MS } from '../../src/core/log-rate-limit.ts';
import { H2LimitReport } from '../../src/proxy/http/h2-limit-report.ts';
import { ProxyMetrics } from '../../src/proxy/telemetry/metrics.ts';
import { GET, RawPeer, rawClient, rawFrames } from '../helpers/h2-raw.ts';
import { startInboundWorld } from '../helpers/h2h1-inbound.ts';

function recordingLog(lines: Array<[string, LogFields | undefined]>): Logger {
  const log: Logger = {
    trace() {},
    debug() {},
    info() {},
    warn: (msg, fields) => void lines.push([msg, fields]),
    error() {},
    child: () => log,
    enabled: () => true,
  };
  return log;
}

test('the h2h1 inbound counts a CONTINUATION flood under its limit', async () => {
  const world = await startInboundWorld();
  const peer = await RawPeer.connect(world.port);
  try {
    await peer.write(
      rawClient((w, enc) => {
        const block = enc.encode(GET('/'));
        w.header(block.length, FrameType.HEADERS, Flag.END_STREAM, 1);
        w.bytes(block);
      }),
    );
    const burst = rawFrames((w) => {
      for (let i = 0; i < 1000; i++) w.header(0, FrameType.CONTINUATION, 0, 1);
    });
    for (let i = 0; i < 20 && !peer.closed; i++) await peer.write(burst);
    assert.ok((await peer.frame(FrameType.GOAWAY)) !== undefined);
    assert.deepEqual(world.metrics.limits, ['continuation-frames']);
    assert.equal(world.seen.length, 0);
  } finally {
    peer.close();
    await world.close();
  }
});

test('limit hits: every one counted, one log line per interval saying how many it left out', () => {
  const metrics = new ProxyMetrics();
  const lines: Array<[string, LogFields | undefined]> = [];
  let now = 1_000_000;
  const report = new H2LimitReport(metrics, recordingLog(lines), 'inbound', () => now);
  for (let i = 0; i < 100; i++) report.hit('peer-resets', 'too many', 'spiffe://t/ns/a/sa/b');
  assert.equal(lines.length, 1);
  now += LOG_THROTTLE_INTERVAL_MS;
  report.hit('continuation-frames', 'too many', 'spiffe://t/ns/a/sa/b');
  assert.equal(lines.length, 2);
  assert.equal(lines[1]![1]!.notLoggedSince, 99);
  assert.equal(lines[1]![1]!.limit, 'continuation-frames');
  const text = metrics.render();
  assert.match(text, /trellis_h2_limit_exceeded_total\{direction="inbound",limit="peer-resets"\} 100/);
  assert.match(text, /trellis_h2_limit_exceeded_total\{direction="inbound",limit="continuation-frames"\} 1/);
});
