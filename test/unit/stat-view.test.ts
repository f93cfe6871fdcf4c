// The parsers behind `trellis stat`'s arguments, property-based: -t windows (durations bounded to
// 1s..10m), --direction, GET /api/stat's query (what the CLI sends, the control plane reads back
// unchanged), KIND/NAME resources (deploy/web, ns/x, svc/x, a bare name), and the peers of --from
// and --to (NAMESPACE/NAME, and the rules that tie them to --direction). Any input either parses or
// is refused with a ConfigError; nothing else is thrown.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { ConfigError } from '../../src/core/errors.ts';
import {
  formatStatPeer,
  MAX_STAT_WINDOW_MS,
  MIN_STAT_WINDOW_MS,
  parseDirection,
  parseStatPeer,
  parseStatWindow,
  peerView,
  statQuery,
  statViewOf,
} from '../../src/control/metrics/stat-view.ts';
import { parseTarget, type TargetKind } from '../../src/cli/targeting.ts';

const UNITS = { ms: 1, s: 1000, m: 60_000, h: 3600_000, d: 86_400_000 } as const;
const unit = fc.constantFrom(...(Object.keys(UNITS) as (keyof typeof UNITS)[]));
/** "1m30s"-style sums of parts, with their value in ms. */
const duration = fc
  .array(fc.tuple(fc.integer({ min: 0, max: 100_000 }), unit), { minLength: 1, maxLength: 4 })
  .map((parts) => ({
    text: parts.map(([n, u]) => `${n}${u}`).join(''),
    ms: parts.reduce((sum, [n, u]) => sum + n * UNITS[u], 0),
  }));

/** Runs `parse`; a ConfigError is a refusal (null), anything else thrown fails the property. */
function refusedOr<T>(parse: () => T): T | null {
  try {
    return parse();
  } catch (error) {
    assert.ok(error instanceof ConfigError, `not a ConfigError: ${String(error)}`);
    return null;
  }
}

test('parseStatWindow: a duration inside 1s..10m is its milliseconds; any other is refused', () => {
  fc.assert(
    fc.property(duration, ({ text, ms }) => {
      const parsed = refusedOr(() => parseStatWindow('--time-window', text));
      const inside = ms >= MIN_STAT_WINDOW_MS && ms <= MAX_STAT_WINDOW_MS;
      assert.equal(parsed, inside ? ms : null, text);
    }),
    { numRuns: 500 },
  );
  assert.equal(parseStatWindow('-t', '30s'), 30_000);
  assert.equal(parseStatWindow('-t', '1m'), 60_000);
  assert.equal(parseStatWindow('-t', '10m'), 600_000);
  assert.equal(parseStatWindow('-t', '1m30s'), 90_000);
  for (const bad of ['', '0s', '999ms', '10m1s', '1h', '30', 's', '1.5s', '-1s', ' 1s', '1s ']) {
    assert.throws(() => parseStatWindow('-t', bad), ConfigError, bad);
  }
});

test('parseStatWindow and parseDirection: any string parses or is refused, never throws otherwise', () => {
  fc.assert(
    fc.property(fc.string({ maxLength: 30 }), (text) => {
      const window = refusedOr(() => parseStatWindow('-t', text));
      if (window !== null) assert.ok(window >= MIN_STAT_WINDOW_MS && window <= MAX_STAT_WINDOW_MS);
      const direction = refusedOr(() => parseDirection('--direction', text));
      assert.equal(direction, text === 'inbound' || text === 'outbound' ? text : null);
    }),
    { numRuns: 1000 },
  );
});

test('statQuery and statViewOf: the control plane reads back what the CLI sends', () => {
  fc.assert(
    fc.property(
      fc.option(fc.string({ maxLength: 20 }), { nil: undefined }),
      fc.constantFrom('inbound' as const, 'outbound' as const),
      fc.integer({ min: MIN_STAT_WINDOW_MS, max: MAX_STAT_WINDOW_MS }),
      (namespace, direction, windowMs) => {
        const query = new URLSearchParams(statQuery(namespace, { direction, windowMs }).slice(1));
        assert.equal(query.get('namespace') ?? undefined, namespace);
        assert.deepEqual(statViewOf(query), { direction, windowMs });
      },
    ),
  );
  assert.deepEqual(statViewOf(new URLSearchParams('')), { direction: 'inbound', windowMs: 10_000 });
  assert.throws(() => statViewOf(new URLSearchParams('window=1h')), /window: must be between 1s and 10m/);
  assert.throws(
    () => statViewOf(new URLSearchParams('direction=up')),
    /direction: expected inbound or outbound/,
  );
});

const KINDS: Record<string, TargetKind> = {
  workload: 'workload',
  workloads: 'workload',
  wl: 'workload',
  deploy: 'workload',
  deployment: 'workload',
  deployments: 'workload',
  svc: 'workload',
  service: 'workload',
  services: 'workload',
  po: 'pod',
  pod: 'pod',
  pods: 'pod',
  ns: 'namespace',
  namespace: 'namespace',
  namespaces: 'namespace',
};
const dnsName = fc.stringMatching(/^[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?$/);
const ALL: TargetKind[] = ['workload', 'pod', 'namespace'];

test('parseTarget: KIND/NAME for every kind alias, KIND alone, a bare NAME is a workload', () => {
  fc.assert(
    fc.property(fc.constantFrom(...Object.keys(KINDS)), dnsName, (alias, name) => {
      assert.deepEqual(parseTarget(`${alias}/${name}`, ALL), { kind: KINDS[alias], name });
      assert.deepEqual(parseTarget(alias, ALL), { kind: KINDS[alias], name: null });
      assert.throws(() => parseTarget(alias, ALL, true), /NAME: missing/);
      assert.throws(() => parseTarget(`${alias}/`, ALL), /NAME: missing/);
      if (KINDS[name] === undefined) assert.deepEqual(parseTarget(name, ALL), { kind: 'workload', name });
      // A kind the command does not take is refused, naming what it takes.
      const others = ALL.filter((k) => k !== KINDS[alias]);
      assert.throws(() => parseTarget(`${alias}/${name}`, others), /KIND: expected/);
    }),
    { numRuns: 300 },
  );
});

test('parseTarget: any string parses to an accepted kind with a non-empty name, or is refused', () => {
  fc.assert(
    fc.property(fc.string({ maxLength: 30 }), fc.subarray(ALL, { minLength: 1 }), (text, accepted) => {
      const target = refusedOr(() => parseTarget(text, accepted));
      if (target === null) return;
      assert.ok(accepted.includes(target.kind));
      assert.ok(target.name === null || target.name.length > 0);
      if (target.name !== null) assert.ok(text.endsWith(target.name));
    }),
    { numRuns: 1000 },
  );
});

const peerName = fc.stringMatching(/^[a-z0-9]([-.a-z0-9]{0,30}[a-z0-9])?$/);
const peer = fc.record({ namespace: peerName, name: peerName }).map((p) => ({ ...p }));

test('parseStatPeer: NAMESPACE/NAME reads back what formatStatPeer writes; anything else is refused', () => {
  fc.assert(fc.property(peer, (p) => assert.deepEqual(parseStatPeer('from', formatStatPeer(p)), p)));
  fc.assert(
    fc.property(fc.string({ maxLength: 40 }), (text) => {
      const parsed = refusedOr(() => parseStatPeer('to', text));
      if (parsed !== null) assert.equal(formatStatPeer(parsed), text);
    }),
    { numRuns: 1000 },
  );
  for (const bad of ['web', '/web', 'ns/', 'ns/a/b', 'NS/web', 'ns/-web', `ns/${'a'.repeat(254)}`]) {
    assert.throws(() => parseStatPeer('from', bad), ConfigError, bad);
  }
});

test('peerView: --from is inbound, --to outbound; both, or against --direction, are refused', () => {
  const dir = fc.option(fc.constantFrom('inbound' as const, 'outbound' as const), { nil: undefined });
  fc.assert(
    fc.property(
      dir,
      fc.option(peer, { nil: undefined }),
      fc.option(peer, { nil: undefined }),
      (d, from, to) => {
        const view = refusedOr(() => peerView(d, from, to));
        const refused =
          (from !== undefined && to !== undefined) ||
          (from !== undefined && d === 'outbound') ||
          (to !== undefined && d === 'inbound');
        assert.equal(view === null, refused);
        if (view === null) return;
        assert.deepEqual(view.peer, from ?? to);
        assert.equal(
          view.direction,
          from !== undefined ? 'inbound' : to !== undefined ? 'outbound' : (d ?? 'inbound'),
        );
      },
    ),
  );
  const web = { namespace: 'default', name: 'web' };
  assert.throws(() => peerView(undefined, web, web), /--from: give --from or --to, not both/);
  assert.throws(() => peerView('outbound', web, undefined), /--from: filters the requests a workload served/);
  assert.throws(() => peerView('inbound', undefined, web), /--to: filters the requests a workload made/);
});

test('statQuery and statViewOf carry the peer: from= inbound, to= outbound', () => {
  fc.assert(
    fc.property(
      fc.constantFrom('inbound' as const, 'outbound' as const),
      fc.integer({ min: MIN_STAT_WINDOW_MS, max: MAX_STAT_WINDOW_MS }),
      peer,
      (direction, windowMs, p) => {
        const query = new URLSearchParams(statQuery('x', { direction, windowMs, peer: p }).slice(1));
        assert.equal(query.get(direction === 'inbound' ? 'from' : 'to'), formatStatPeer(p));
        assert.deepEqual(statViewOf(query), { direction, windowMs, peer: p });
      },
    ),
  );
  assert.throws(() => statViewOf(new URLSearchParams('from=a/b&to=c/d')), /from: give from or to, not both/);
  assert.throws(() => statViewOf(new URLSearchParams('direction=outbound&from=a/b')), /from: filters/);
  assert.throws(() => statViewOf(new URLSearchParams('to=nope')), /to: expected NAMESPACE\/NAME/);
});
