// The tap benchmark's judgement and report (bench/tap/report.ts): the ratio is the tapped pair
// over the untapped one, PASS at 0.90x and above (issue 11: a tap attached loses at most 10%), and
// a run whose taps got nothing, or whose reader was too slow, says so.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  judgeTap,
  TAPPED,
  tapMarkdown,
  tapRatios,
  tapWarnings,
  UNTAPPED,
  type TapRow,
} from '../../bench/tap/report.ts';
import type { WrkResult } from '../../bench/wrk.ts';

const wrk = (rps: number, requests: number): WrkResult =>
  ({ rps, rpsMedian: rps, requests }) as unknown as WrkResult;

test('the ratio is tapped over untapped req/s, judged at 0.90x', () => {
  const rows: TapRow[] = [
    { name: UNTAPPED, throughput: wrk(10_000, 100_000), cpuSecondsPer1000Requests: 0.2 },
    { name: TAPPED, throughput: wrk(9_100, 91_000), cpuSecondsPer1000Requests: 0.21 },
  ];
  const ratios = tapRatios(rows);
  assert.equal(ratios.rps, 0.91);
  assert.deepEqual(
    [judgeTap(ratios)[0]!.pass, judgeTap({ rps: 0.899 })[0]!.pass, judgeTap({})[0]!.pass],
    [true, false, null],
  );
  assert.deepEqual(tapRatios([rows[0]!, { ...rows[1]!, error: 'down' }]), {});
});

test('a tap that got nothing or fell behind is a warning; the table shows what the taps got', () => {
  const rows: TapRow[] = [
    { name: UNTAPPED, throughput: wrk(10_000, 100_000) },
    {
      name: TAPPED,
      throughput: wrk(9_500, 95_000),
      tapEvents: 4_800,
      tapRateCapped: 180_000,
      tapSlowConsumer: 12,
    },
  ];
  const warnings = tapWarnings({ rows, loadAverage: [0.5] }).join('\n');
  assert.match(warnings, /12 events dropped for a slow reader/);
  assert.match(
    tapWarnings({ rows: [{ ...rows[1]!, tapEvents: 0, tapSlowConsumer: 0 }], loadAverage: [0] }).join('\n'),
    /no event/,
  );
  const md = tapMarkdown({
    startedAt: 'now',
    versions: {},
    settings: {},
    maxRps: 100,
    rows,
    ratios: tapRatios(rows),
    targets: judgeTap(tapRatios(rows)),
    loadAverage: [0.5],
  });
  assert.match(md, /\| trellis \+ tap \| 9,500 \| 9,500 \| .* \| 4,800 \| 180,000 \/ 12 \|/);
  assert.match(md, /0\.95x req\/s .* \| PASS \|/);
});
