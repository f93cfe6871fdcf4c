// The tracing benchmark's judgement and report (bench/tracing/report.ts): the ratio is the traced
// pair over the untraced one, PASS at 0.85x and above (issue 11: lose at most 15%), and a run that
// dropped spans says so (part of the cost was not paid); its collector counts spans without
// decoding them.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  judgeTracing,
  TRACED,
  tracingMarkdown,
  tracingRatios,
  tracingWarnings,
  UNTRACED,
  type TracingRow,
} from '../../bench/tracing/report.ts';
import type { WrkResult } from '../../bench/wrk.ts';
import { countSpans } from '../../bench/tracing/receiver.ts';
import { encodeTraceRequest } from '../../src/proxy/telemetry/trace-otlp.ts';
import { TraceSpan } from '../../src/proxy/telemetry/trace-span.ts';
import { decodeTraceRequest } from '../helpers/otlp-receiver.ts';

const wrk = (rps: number, requests: number): WrkResult =>
  ({ rps, rpsMedian: rps, requests }) as unknown as WrkResult;

test('the ratio is traced over untraced req/s, judged at 0.85x', () => {
  const rows: TracingRow[] = [
    { name: UNTRACED, throughput: wrk(10_000, 100_000), cpuSecondsPer1000Requests: 0.2 },
    { name: TRACED, throughput: wrk(8_600, 86_000), cpuSecondsPer1000Requests: 0.25 },
  ];
  const ratios = tracingRatios(rows);
  assert.equal(ratios.rps, 0.86);
  assert.equal(ratios.cpuPer1000, 1.25);
  assert.deepEqual(
    [judgeTracing(ratios)[0]!.pass, judgeTracing({ rps: 0.849 })[0]!.pass, judgeTracing({})[0]!.pass],
    [true, false, null],
  );
  assert.deepEqual(tracingRatios([rows[0]!, { ...rows[1]!, error: 'down' }]), {});
});

test('dropped spans are a warning, and the table shows the export counts', () => {
  const rows: TracingRow[] = [
    { name: UNTRACED, throughput: wrk(10_000, 100_000) },
    {
      name: TRACED,
      throughput: wrk(9_000, 90_000),
      spansExported: 179_000,
      spansReceived: 178_000,
      spansDroppedQueueFull: 1000,
      spansDroppedExportFailed: 0,
      exportRequests: 400,
      exportBytes: 80e6,
    },
  ];
  const warnings = tracingWarnings({ rows, loadAverage: [0.5] }).join('\n');
  assert.match(warnings, /1000 spans dropped/);
  assert.match(warnings, /collector counted 178000 spans where the proxies say they exported 179000/);
  const md = tracingMarkdown({
    startedAt: 'now',
    versions: {},
    settings: {},
    protocol: 'OTLP/HTTP',
    rows,
    ratios: tracingRatios(rows),
    targets: judgeTracing(tracingRatios(rows)),
    loadAverage: [0.5],
  });
  assert.match(
    md,
    /\| trellis \+ tracing \| 9,000 \| 9,000 \| .* \| 179,000 \/ 178,000 \| 1,000 \/ 0 \| 400 \| 80\.0 \|/,
  );
  assert.match(md, /0\.90x req\/s .* \| PASS \|/);
});

test('the bench collector counts the spans of an export without decoding them', () => {
  const span = (i: number) => {
    const s = new TraceSpan(
      'client',
      '4bf92f3577b34da6a3ce929d0e0e4736',
      `${i}`.padStart(16, '1'),
      null,
      '',
      1000,
      '',
    );
    return {
      span: s,
      name: 'GET',
      endMs: 1001,
      attributes: ['url.path', '/x', 'http.response.status_code', 200],
      error: i % 2 === 0,
      statusMessage: 'e',
    };
  };
  const resource = {
    attributes: [['service.name', 'web']] as [string, string][],
    scopeName: 's',
    scopeVersion: '1',
  };
  for (const n of [0, 1, 7, 600]) {
    const body = encodeTraceRequest(
      resource,
      Array.from({ length: n }, (_, i) => span(i)),
    );
    assert.equal(countSpans(body), n);
    assert.equal(decodeTraceRequest(body).length, n);
  }
});
