// An HTTP/2 exchange's latency and span end where its response ended downstream, not where the
// stream closed: the close waits for the peer's end of the request and node:http2's callback,
// which on a busy machine came milliseconds later (a demo trace showed a gRPC SERVER span
// outlasting the CLIENT span it answered: 19 ms against 12).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ExchangeOutcome, type OutcomeSink } from '../../src/proxy/http/h2-exchange-outcome.ts';

function busyFor(ms: number): void {
  const until = performance.now() + ms;
  while (performance.now() < until);
}

function sink(latencies: number[]): OutcomeSink {
  return {
    direction: 'inbound',
    peer: '127.0.0.1',
    accessLog: null,
    metrics: { responseFinished: (_d, _p, _s, latencyMs) => void latencies.push(latencyMs) },
  };
}

test('an exchange is measured to the end of its response, not to the close of its stream', () => {
  const latencies: number[] = [];
  const outcome = new ExchangeOutcome();
  outcome.status = 200;
  outcome.markResponseEnded();
  const endedAt = Date.now();
  busyFor(60); // the stream closes later
  outcome.markResponseEnded(); // only the first end counts
  outcome.report(sink(latencies), { ':method': 'POST', ':path': '/x' }, 'web:80', false);
  assert.equal(latencies.length, 1);
  assert.ok(latencies[0]! < 40, `latency ${latencies[0]} ms includes the wait for the close`);
  assert.ok(Math.abs(outcome.endedWallMs! - endedAt) < 40, 'the span ends when the response did');
});

test('an exchange whose response never ended is measured to its report', () => {
  const latencies: number[] = [];
  const outcome = new ExchangeOutcome();
  busyFor(30);
  outcome.report(sink(latencies), { ':method': 'GET', ':path': '/' }, 'web:80', true);
  assert.ok(latencies[0]! >= 30);
  assert.equal(outcome.endedWallMs, undefined);
  assert.equal(outcome.responseEnded, false);
});
