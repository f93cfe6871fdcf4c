// The trace context parsers and the join that rewrites a request's fields
// (src/proxy/telemetry/trace-context.ts, trace-propagation.ts): property tests that no input
// throws, that what is accepted is valid and what is written parses back, and that a request is
// either left exactly as it came (untraced) or carries exactly one valid context naming the
// proxy's span (traced), never a malformed one.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  MAX_TRACESTATE_LENGTH,
  MAX_TRACESTATE_MEMBERS,
  formatB3Single,
  formatTraceparent,
  parseB3Multi,
  parseB3Single,
  parseTraceparent,
  parseTracestate,
} from '../../src/proxy/telemetry/trace-context.ts';
import { joinTrace, joinTraceObject } from '../../src/proxy/telemetry/trace-propagation.ts';
import { randomHexId } from '../../src/proxy/telemetry/trace-span.ts';

const hexChar = fc.constantFrom(...'0123456789abcdef');
const hex = (n: number) => fc.string({ unit: hexChar, minLength: n, maxLength: n });
const traceId = hex(32).filter((s) => !/^0+$/.test(s));
const spanId = hex(16).filter((s) => !/^0+$/.test(s));
const TRACE_NAMES = [
  'traceparent',
  'tracestate',
  'b3',
  'x-b3-traceid',
  'x-b3-spanid',
  'x-b3-parentspanid',
  'x-b3-sampled',
  'x-b3-flags',
  'Traceparent',
  'X-B3-SpanId',
];

/** Field values: arbitrary strings, and near-misses of valid ones. */
const fieldValue = fc.oneof(
  fc.string({ maxLength: 80 }),
  fc.tuple(traceId, spanId, fc.constantFrom('00', '01', '0x', 'ff')).map(([t, s, f]) => `00-${t}-${s}-${f}`),
  fc.tuple(traceId, spanId).map(([t, s]) => `00-${t.toUpperCase()}-${s}-01`),
  fc.tuple(traceId, spanId, fc.constantFrom('0', '1', 'd', 'x')).map(([t, s, f]) => `${t}-${s}-${f}`),
  fc.constantFrom('0', '1', 'd', 'true', '', '00-00000000000000000000000000000000-0000000000000000-01'),
  spanId,
  fc.string({ unit: 'binary', maxLength: 40 }),
  fc.constant('a'.repeat(5000)),
);
const fieldList = fc.array(
  fc.tuple(
    fc.oneof(fc.constantFrom(...TRACE_NAMES), fc.constantFrom('host', 'user-agent', 'x-other')),
    fieldValue,
  ),
  { maxLength: 8 },
);

/** Every trace context field of a list parses: none is forwarded half-parsed. */
function assertCarriesSpan(fields: string[], span: { traceId: string; spanId: string }): void {
  const get = (n: string) => {
    const v: string[] = [];
    for (let i = 0; i < fields.length; i += 2) if (fields[i]!.toLowerCase() === n) v.push(fields[i + 1]!);
    return v;
  };
  const tp = get('traceparent');
  const b3 = get('b3');
  const multi = get('x-b3-spanid');
  assert.ok(tp.length + b3.length + multi.length >= 1, `a context is sent: ${JSON.stringify(fields)}`);
  for (const v of tp) {
    const c = parseTraceparent(v);
    assert.ok(c !== null && c.spanId === span.spanId && c.traceId === span.traceId && c.sampled, v);
  }
  for (const v of b3) {
    const c = parseB3Single(v);
    assert.ok(c !== null && c.spanId === span.spanId && c.traceId === span.traceId && c.sampled, v);
  }
  if (multi.length > 0) {
    assert.equal(multi.length, 1);
    const c = parseB3Multi({
      traceId: get('x-b3-traceid')[0],
      spanId: multi[0],
      sampled: get('x-b3-sampled')[0],
      flags: get('x-b3-flags')[0],
    });
    assert.ok(c !== null && c.spanId === span.spanId && c.traceId === span.traceId && c.sampled !== false);
  }
  for (const v of get('tracestate')) assert.notEqual(parseTracestate(v), null, v);
  for (const v of fields) assert.ok(v.length <= 5000);
}

test('traceparent: valid values parse back to their ids and flags, nothing else is accepted', () => {
  fc.assert(
    fc.property(traceId, spanId, (t, s) => {
      const c = parseTraceparent(formatTraceparent(t, s));
      assert.deepEqual(c, { format: 'w3c', traceId: t, rawTraceId: t, spanId: s, sampled: true });
      assert.equal(parseTraceparent(`00-${t}-${s}-00`)?.sampled, false);
      assert.equal(parseTraceparent(`00-${t}-${s}-01-extra`), null, 'version 00 is exactly 55 characters');
      assert.equal(parseTraceparent(`cc-${t}-${s}-01-extra`)?.traceId, t, 'a later version may add fields');
      assert.equal(parseTraceparent(`ff-${t}-${s}-01`), null);
      assert.equal(parseTraceparent(`00-${t.toUpperCase()}-${s}-01`), t === t.toUpperCase() ? c : null);
    }),
  );
  assert.equal(parseTraceparent(`00-${'0'.repeat(32)}-00f067aa0ba902b7-01`), null);
  assert.equal(parseTraceparent(`00-4bf92f3577b34da6a3ce929d0e0e4736-${'0'.repeat(16)}-01`), null);
  fc.assert(
    fc.property(fc.string({ unit: 'binary', maxLength: 300 }), (v) => {
      const c = parseTraceparent(v);
      if (c === null) return;
      assert.match(c.traceId, /^[0-9a-f]{32}$/);
      assert.match(c.spanId!, /^[0-9a-f]{16}$/);
    }),
  );
});

test('tracestate: kept only when every member is valid, within 512 characters and 32 members', () => {
  assert.equal(parseTracestate('vendor=abc, other@sys=1 ,,'), 'vendor=abc,other@sys=1');
  assert.equal(parseTracestate('Vendor=abc'), null);
  assert.equal(parseTracestate('a=1,a=2'), null, 'duplicate keys');
  assert.equal(parseTracestate('a=x,b'), null);
  assert.equal(parseTracestate(Array.from({ length: 33 }, (_, i) => `k${i}=v`).join(',')), null);
  assert.equal(parseTracestate('k=' + 'v'.repeat(MAX_TRACESTATE_LENGTH)), null);
  fc.assert(
    fc.property(fc.string({ maxLength: 700 }), (v) => {
      const kept = parseTracestate(v);
      if (kept === null) return;
      assert.ok(kept.length <= MAX_TRACESTATE_LENGTH);
      assert.ok(kept.split(',').length <= MAX_TRACESTATE_MEMBERS);
      assert.equal(parseTracestate(kept), kept, 'what is kept is kept again');
    }),
  );
});

test('B3: single and multi-header values parse back; malformed ones are refused', () => {
  fc.assert(
    fc.property(
      fc.oneof(hex(16), traceId).filter((s) => !/^0+$/.test(s)),
      spanId,
      spanId,
      (t, s, p) => {
        const full = t.length === 16 ? '0'.repeat(16) + t : t;
        assert.deepEqual(parseB3Single(formatB3Single(t, s, p)), {
          format: 'b3-single',
          traceId: full,
          rawTraceId: t,
          spanId: s,
          sampled: true,
        });
        assert.equal(parseB3Single(`${t}-${s}`)?.sampled, null, 'no sampling state: deferred');
        assert.equal(parseB3Multi({ traceId: t, spanId: s, sampled: '0' })?.sampled, false);
        assert.equal(parseB3Multi({ traceId: t, spanId: s, flags: '1' })?.sampled, true, 'debug');
        assert.equal(parseB3Multi({ traceId: t, spanId: s, sampled: 'yes' }), null);
        assert.equal(parseB3Multi({ traceId: t }), null);
      },
    ),
  );
  assert.deepEqual(parseB3Single('0'), {
    format: 'b3-single',
    traceId: '',
    rawTraceId: '',
    spanId: null,
    sampled: false,
  });
  assert.equal(parseB3Single('x'), null);
  assert.equal(parseB3Single('a'.repeat(100)), null);
  fc.assert(
    fc.property(fc.string({ unit: 'binary', maxLength: 120 }), fc.string({ maxLength: 40 }), (a, b) => {
      parseB3Single(a);
      parseB3Multi({ traceId: a, spanId: b, sampled: b, flags: a });
    }),
  );
});

test('joinTrace: untraced requests are left exactly as they came; traced ones carry exactly the proxy span', () => {
  fc.assert(
    fc.property(
      fieldList,
      fc.constantFrom(0, 0.5, 1),
      fc.constantFrom('server', 'client') as fc.Arbitrary<'server' | 'client'>,
      (list, ratio, kind) => {
        const fields = list.flat();
        const before = [...fields];
        const span = joinTrace(fields, kind, ratio);
        if (span === null) {
          assert.deepEqual(fields, before);
          return;
        }
        assert.equal(span.kind, kind);
        assert.match(span.traceId, /^[0-9a-f]{32}$/);
        assert.match(span.spanId, /^[0-9a-f]{16}$/);
        assert.notEqual(span.spanId, span.parentSpanId);
        assertCarriesSpan(fields, span);
        // The fields that are not trace context are untouched, in order.
        const other = (f: string[]) =>
          f.filter((_, i) => i % 2 === 0 && !TRACE_NAMES.includes(f[i]!)).map((n, i) => n + i);
        assert.deepEqual(other(fields), other(before));
      },
    ),
    { numRuns: 2000 },
  );
});

test('joinTrace: the decisions', () => {
  const T = '4bf92f3577b34da6a3ce929d0e0e4736';
  const P = '00f067aa0ba902b7';
  // Sampled W3C: joined whatever the ratio.
  let f = ['Host', 'a', 'traceparent', `00-${T}-${P}-01`];
  let span = joinTrace(f, 'server', 0)!;
  assert.equal(span.traceId, T);
  assert.equal(span.parentSpanId, P);
  assert.deepEqual(f, ['Host', 'a', 'traceparent', `00-${T}-${span.spanId}-01`]);
  // A later version (which may append fields): carried on as version 00, without its additions.
  f = ['traceparent', `cc-${T}-${P}-01-what-comes-next`];
  span = joinTrace(f, 'server', 0)!;
  assert.equal(span.parentSpanId, P);
  assert.deepEqual(f, ['traceparent', `00-${T}-${span.spanId}-01`]);
  // Unsampled: never traced, even at ratio 1.
  f = ['traceparent', `00-${T}-${P}-00`];
  assert.equal(joinTrace(f, 'server', 1), null);
  assert.deepEqual(f, ['traceparent', `00-${T}-${P}-00`]);
  // Malformed at ratio 0: ignored, left alone; at ratio 1: a new trace replaces it.
  f = ['traceparent', `00-${T}-${P}-0`, 'tracestate', 'a=1'];
  assert.equal(joinTrace(f, 'client', 0), null);
  span = joinTrace(f, 'client', 1)!;
  assert.notEqual(span.traceId, T);
  assert.equal(span.parentSpanId, null);
  assert.deepEqual(f, ['traceparent', `00-${span.traceId}-${span.spanId}-01`]);
  // A repeated traceparent is ambiguous: ignored.
  f = ['traceparent', `00-${T}-${P}-01`, 'traceparent', `00-${T}-${P}-01`];
  assert.equal(joinTrace(f, 'server', 0), null);
  // An invalid tracestate is dropped, a valid one kept.
  f = ['traceparent', `00-${T}-${P}-01`, 'tracestate', 'A=1'];
  span = joinTrace(f, 'server', 0)!;
  assert.deepEqual(f, ['traceparent', `00-${T}-${span.spanId}-01`]);
  // B3 deferred decision: the ratio decides.
  f = ['x-b3-traceid', T, 'x-b3-spanid', P];
  assert.equal(joinTrace(f, 'server', 0), null);
  span = joinTrace(f, 'server', 1)!;
  assert.deepEqual(f, [
    'x-b3-traceid',
    T,
    'x-b3-spanid',
    span.spanId,
    'x-b3-parentspanid',
    P,
    'x-b3-sampled',
    '1',
  ]);
  // W3C wins over B3; the B3 fields it does not carry on are removed (no contradicting parent).
  f = ['b3', `${T}-${P}-1`, 'traceparent', `00-${T}-${P}-01`];
  span = joinTrace(f, 'server', 0)!;
  assert.deepEqual(f, ['traceparent', `00-${T}-${span.spanId}-01`]);
  // The header object form (node:http2).
  const h: Record<string, string | string[] | number | undefined> = {
    ':path': '/',
    traceparent: `00-${T}-${P}-01`,
  };
  span = joinTraceObject(h, 'client', 0)!;
  assert.deepEqual(h, { ':path': '/', traceparent: `00-${T}-${span.spanId}-01` });
  const none: Record<string, string | string[] | number | undefined> = { ':path': '/' };
  assert.equal(joinTraceObject(none, 'client', 0), null);
  assert.deepEqual(none, { ':path': '/' });
  assert.ok(joinTraceObject(none, 'client', 1) !== null);
  assert.match(String((none as Record<string, unknown>).traceparent), /^00-[0-9a-f]{32}-[0-9a-f]{16}-01$/);
});

test('joinTrace: a ratio starts that share of new traces', () => {
  let traced = 0;
  for (let i = 0; i < 4000; i++) if (joinTrace([], 'client', 0.25) !== null) traced++;
  assert.ok(traced > 800 && traced < 1200, `${traced} of 4000 at 0.25`);
  assert.equal(
    Array.from({ length: 1000 }, () => joinTraceObject({}, 'client', 0.25)).filter((s) => s !== null).length >
      150,
    true,
  );
});

test('new traces: each traceparent is 00-{trace id}-{span id}-01 of its span, ids fresh across pool refills', () => {
  const seen = new Set<string>();
  for (let i = 0; i < 300; i++) {
    const fields: string[] = [];
    const span = joinTrace(fields, 'client', 1)!;
    assert.deepEqual(fields, ['traceparent', `00-${span.traceId}-${span.spanId}-01`]);
    assert.ok(!/^0+$/.test(span.traceId) && !/^0+$/.test(span.spanId));
    // A joined trace's next hop: the span id of a pool of its own.
    const next = ['traceparent', fields[1]!];
    const child = joinTrace(next, 'server', 0)!;
    assert.equal(child.traceId, span.traceId);
    assert.equal(child.parentSpanId, span.spanId);
    assert.deepEqual(next, ['traceparent', `00-${span.traceId}-${child.spanId}-01`]);
    seen.add(span.traceId).add(span.spanId).add(child.spanId);
  }
  assert.equal(seen.size, 900);
});

test('randomHexId: lower-case hex of the asked length, never zero, no repeats across pool refills', () => {
  const seen = new Set<string>();
  for (let i = 0; i < 2000; i++) {
    const trace = randomHexId(16);
    const span = randomHexId(8);
    assert.match(trace, /^[0-9a-f]{32}$/);
    assert.match(span, /^[0-9a-f]{16}$/);
    assert.ok(!/^0+$/.test(trace) && !/^0+$/.test(span));
    seen.add(trace).add(span);
  }
  assert.equal(seen.size, 4000);
});
