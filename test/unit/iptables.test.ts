// The interception rules of `trellis init`: flag parsers (property-based), the rules built from
// the flags, and, as root in a fresh network namespace, that applying is idempotent and removable.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { test } from 'node:test';
import fc from 'fast-check';
import { ConfigError } from '../../src/core/errors.ts';
import { parseInitArgs } from '../../src/cli/init.ts';
import {
  buildChainRules,
  formatCidr,
  formatPortList,
  normalizeSave,
  parseCidrList,
  parsePortList,
  planInstall,
  planRemove,
  type InterceptionOptions,
  type PortRange,
} from '../../src/proxy/transport/iptables.ts';
import { createNetns, netnsSkipReason } from '../e2e/netns.ts';

const MAIN = new URL('../../src/cli/main.ts', import.meta.url).pathname;

const base: InterceptionOptions = {
  inboundPort: 4143,
  outboundPort: 4140,
  adminPort: 4191,
  proxyUid: 2102,
  proxyGid: undefined,
  inboundPortsToIgnore: [],
  outboundPortsToIgnore: [],
  subnetsToIgnore: [],
};

const portArb = fc.integer({ min: 1, max: 65535 });
const rangeArb = fc
  .tuple(portArb, portArb)
  .map(([a, b]): PortRange => ({ first: Math.min(a, b), last: Math.max(a, b) }));

function covers(ranges: readonly PortRange[], port: number): boolean {
  return ranges.some((r) => r.first <= port && port <= r.last);
}

test('port lists: parsing keeps exactly the listed ports, sorted, merged, and round-trips', () => {
  fc.assert(
    fc.property(
      fc.array(rangeArb, { maxLength: 12 }),
      fc.array(portArb, { maxLength: 20 }),
      (ranges, probes) => {
        const text = ranges
          .map((r) => (r.first === r.last ? `${r.first}` : ` ${r.first}-${r.last} `))
          .join(',');
        const parsed = parsePortList(text, '--x');
        for (const p of [...probes, ...ranges.flatMap((r) => [r.first, r.last, r.first - 1, r.last + 1])]) {
          assert.equal(covers(parsed, p), covers(ranges, p), `port ${p}`);
        }
        for (let i = 1; i < parsed.length; i++)
          assert.ok(parsed[i]!.first > parsed[i - 1]!.last + 1, 'merged');
        assert.deepEqual(parsePortList(formatPortList(parsed), '--x'), parsed);
      },
    ),
  );
});

test('port lists: anything out of range or malformed is a ConfigError naming the flag', () => {
  const bad = fc.oneof(
    fc.constantFrom(
      '0',
      '65536',
      '99999',
      '-1',
      '1-',
      '-5',
      '10-5',
      '1,,2',
      'a',
      '80 443',
      '1.5',
      '0x50',
      '4143-4142',
    ),
    fc.integer({ min: 65536, max: 10_000_000 }).map(String),
    fc.string().filter((s) => /[^\d,\s-]/.test(s)),
  );
  fc.assert(
    fc.property(bad, (text) => {
      assert.throws(
        () => parsePortList(text, '--inbound-ports-to-ignore'),
        (err: unknown) => err instanceof ConfigError && err.field === '--inbound-ports-to-ignore',
      );
    }),
  );
});

test('CIDR lists: valid IPv4/IPv6 CIDRs round-trip, bad prefixes and non-addresses are rejected', () => {
  const v4 = fc.tuple(fc.ipV4(), fc.integer({ min: 0, max: 32 })).map(([a, p]) => `${a}/${p}`);
  const v6 = fc.tuple(fc.ipV6(), fc.integer({ min: 0, max: 128 })).map(([a, p]) => `${a}/${p}`);
  fc.assert(
    fc.property(fc.array(fc.oneof(v4, v6), { minLength: 1, maxLength: 8 }), (items) => {
      const parsed = parseCidrList(items.join(','), '--subnets-to-ignore');
      assert.deepEqual(parsed.map(formatCidr), items);
      assert.deepEqual(
        parsed.map((c) => c.family),
        items.map((i) => (i.includes(':') ? 6 : 4)),
      );
    }),
  );
  fc.assert(
    fc.property(
      fc.oneof(
        fc.tuple(fc.ipV4(), fc.integer({ min: 33, max: 999 })).map(([a, p]) => `${a}/${p}`),
        fc.tuple(fc.ipV6(), fc.integer({ min: 129, max: 999 })).map(([a, p]) => `${a}/${p}`),
        fc.constantFrom(
          '10.0.0.0/',
          '10.0.0/8',
          '256.0.0.0/8',
          'example.com/8',
          '10.0.0.0/-1',
          'fe80::1%eth0/64',
          ',',
        ),
      ),
      (text) => {
        assert.throws(
          () => parseCidrList(text, '--subnets-to-ignore'),
          (err: unknown) => err instanceof ConfigError && err.field === '--subnets-to-ignore',
        );
      },
    ),
  );
  assert.deepEqual(parseCidrList('198.18.0.1', '--s'), [{ family: 4, address: '198.18.0.1', prefix: 32 }]);
  assert.deepEqual(parseCidrList('', '--s'), []);
});

test('rules: the proxy uid, loopback and ignored ports/subnets return before the redirects', () => {
  const rules = buildChainRules(
    {
      ...base,
      proxyGid: 2103,
      inboundPortsToIgnore: parsePortList('22,4190', 'x'),
      outboundPortsToIgnore: parsePortList('25,3306-3307', 'x'),
      subnetsToIgnore: parseCidrList('10.0.0.0/8,fd00::/8', 'x'),
    },
    4,
  ).map((r) => r.join(' '));
  const output = rules.filter((r) => r.startsWith('-A TRELLIS_OUTPUT '));
  const expected = [
    '--uid-owner 2102',
    '--gid-owner 2103',
    '-o lo',
    '-d 127.0.0.1/32',
    '--dport 25 ',
    '--dport 3306:3307 ',
    '-d 10.0.0.0/8',
    '-j TRELLIS_OUTBOUND_REDIRECT',
  ];
  assert.equal(output.length, expected.length, output.join('\n'));
  expected.forEach((fragment, i) => assert.ok(output[i]!.includes(fragment), `${output[i]} has ${fragment}`));
  assert.ok(!rules.some((r) => r.includes('fd00::')), 'IPv6 subnets stay out of IPv4 rules');
  const pre = rules.filter((r) => r.startsWith('-A TRELLIS_PREROUTING '));
  assert.deepEqual(
    pre.map((r) => /--dport (\S+)/.exec(r)?.[1] ?? r.split(' -j ')[1]),
    ['22', '4143', '4190:4191', 'TRELLIS_INBOUND_REDIRECT'],
  );
  assert.ok(
    rules.includes(
      '-A TRELLIS_INBOUND_REDIRECT -p tcp -m comment --comment trellis/redirect-to-inbound-port -j REDIRECT --to-ports 4143',
    ),
  );
  assert.ok(rules.some((r) => r.startsWith('-A TRELLIS_OUTBOUND_REDIRECT') && r.endsWith('--to-ports 4140')));
  assert.ok(buildChainRules(base, 6).some((r) => r.join(' ').includes('-d ::1/128')));
});

test('plans: jumps are added only when missing; removal deletes what is there', () => {
  const fresh = planInstall(base, 4, '*nat\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n');
  assert.match(fresh, /^-A PREROUTING .*-j TRELLIS_PREROUTING$/m);
  assert.match(fresh, /^-A OUTPUT .*-j TRELLIS_OUTPUT$/m);
  assert.match(fresh, /^:TRELLIS_OUTPUT - \[0:0\]$/m);
  const installed = [
    '*nat',
    ':PREROUTING ACCEPT [7:420]',
    ':TRELLIS_OUTPUT - [0:0]',
    ':TRELLIS_PREROUTING - [0:0]',
    '-A PREROUTING -m comment --comment "trellis/hook" -j TRELLIS_PREROUTING',
    '-A OUTPUT -m comment --comment "trellis/hook" -j TRELLIS_OUTPUT',
    '-A OUTPUT -j DOCKER_OUTPUT',
    'COMMIT',
  ].join('\n');
  const again = planInstall(base, 4, installed);
  assert.doesNotMatch(again, /^-A (PREROUTING|OUTPUT) /m);
  const removal = planRemove(installed)!;
  assert.match(removal, /^-D PREROUTING -m comment --comment "trellis\/hook" -j TRELLIS_PREROUTING$/m);
  assert.match(removal, /^-X TRELLIS_OUTPUT$/m);
  assert.doesNotMatch(removal, /DOCKER|TRELLIS_INBOUND_REDIRECT/, 'only what exists and is ours');
  assert.equal(planRemove('*nat\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n'), null);
});

test('init flags: each bad flag is named; the proxy uid or gid is required', () => {
  const field = (argv: string[]) => {
    try {
      parseInitArgs(argv);
    } catch (err) {
      assert.ok(err instanceof ConfigError);
      return err.field;
    }
    return 'accepted';
  };
  assert.equal(field([]), '--proxy-uid');
  assert.equal(field(['--proxy-gid', '7']), 'accepted');
  assert.equal(field(['--remove']), 'accepted');
  assert.equal(field(['--proxy-uid', '-1']), '');
  assert.equal(field(['--proxy-uid=x1']), '--proxy-uid');
  assert.equal(field(['--proxy-uid', '1', '--inbound-port', '0']), '--inbound-port');
  assert.equal(field(['--proxy-uid', '1', '--outbound-port', '4143']), '--outbound-port');
  assert.equal(field(['--proxy-uid', '1', '--admin-port', '70000']), '--admin-port');
  assert.equal(
    field(['--proxy-uid', '1', '--outbound-ports-to-ignore', '1-2-3']),
    '--outbound-ports-to-ignore',
  );
  assert.equal(field(['--proxy-uid', '1', '--bogus']), '');
  assert.deepEqual(parseInitArgs(['--proxy-uid', '1', '--ipv6']).families, [4, 6]);
});

function trellisInit(nsRun: (argv: string[]) => string, args: string[]): string {
  return nsRun([process.execPath, MAIN, 'init', ...args]);
}

test('trellis init in a fresh namespace: twice changes nothing, --dry-run nothing, --remove all', async (t) => {
  const skip = netnsSkipReason(['iptables', 'iptables-save', 'iptables-restore']);
  if (skip) return t.skip(skip);
  const ns = createNetns(t, 'init');
  const save = () => normalizeSave(ns.run(['iptables-save', '-t', 'nat']));
  const empty = save();
  const args = [
    '--proxy-uid',
    '2102',
    '--inbound-ports-to-ignore',
    '22',
    '--subnets-to-ignore',
    '198.18.0.0/15',
  ];

  const dry = trellisInit(ns.run, [...args, '--dry-run']);
  assert.match(dry, /iptables-restore --noflush/);
  assert.equal(save(), empty, '--dry-run changed the table');

  trellisInit(ns.run, args);
  const first = save();
  assert.match(first, /^-A OUTPUT -m comment --comment "?trellis\/hook"? -j TRELLIS_OUTPUT$/m);
  assert.match(first, /--uid-owner 2102 .*-j RETURN/);
  assert.match(first, /-d 198\.18\.0\.0\/15 .*-j RETURN/);
  trellisInit(ns.run, args);
  assert.equal(save(), first, 'a second run changed the table');

  trellisInit(ns.run, ['--proxy-uid', '2102', '--outbound-port', '5140']);
  const changed = save();
  assert.match(changed, /--to-ports 5140/);
  assert.doesNotMatch(changed, /198\.18\.0\.0\/15|--to-ports 4140/, 'old rules replaced');
  assert.equal(changed.match(/-j TRELLIS_OUTPUT$/gm)?.length, 1, 'one jump');

  trellisInit(ns.run, ['--remove']);
  assert.equal(save(), empty);
  assert.match(trellisInit(ns.run, ['--remove']), /no Trellis rules/);
});

test('trellis init exits 2 with the flag named on a bad flag', () => {
  const r = spawnSync(
    process.execPath,
    [MAIN, 'init', '--proxy-uid', '1', '--subnets-to-ignore', '10.0.0.0/40'],
    {
      encoding: 'utf8',
    },
  );
  assert.equal(r.status, 2);
  assert.match(r.stderr, /--subnets-to-ignore/);
});
