// validateProxyConfig and readConfigFile (src/proxy/config.ts): defaults, errors that name the
// wrong field, YAML files; and, property-based, that no input makes validation throw anything but
// a ConfigError, and that a validated configuration validates again to itself.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import fc from 'fast-check';
import { ConfigError } from '../../src/core/errors.ts';
import { readConfigFile, splitHostPort, validateProxyConfig } from '../../src/proxy/config.ts';

function configError(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof ConfigError, `expected a ConfigError, got ${String(err)}`);
    assert.equal(err.code, 'TRELLIS_ERR_CONFIG');
    return err;
  }
  assert.fail('expected a ConfigError, nothing was thrown');
}

test('an empty configuration gets every default', () => {
  const c = validateProxyConfig({});
  assert.equal(c.inboundListen, '0.0.0.0:4143');
  assert.equal(c.outboundListen, '127.0.0.1:4140');
  assert.equal(c.adminListen, '0.0.0.0:4191');
  assert.equal(c.appPort, undefined);
  assert.equal(c.appHost, undefined); // 127.0.0.1, or in transparent mode the pod's IP
  assert.equal(c.mode, 'explicit');
  assert.deepEqual(c.destinations, []);
  assert.deepEqual(c.opaquePorts, [25, 587, 3306, 4444, 5432, 6379, 9300, 11211]);
  assert.deepEqual(c.detect, { timeoutMs: 3000, peekMs: 250, opaqueCacheMs: 60_000, opaqueCacheMax: 10_000 });
  assert.equal(c.timeouts.connectMs, 5000);
  assert.equal(c.timeouts.drainGraceMs, 30_000);
  assert.deepEqual(c.log, { level: 'info', access: 'off' });
});

test('given values are kept and nested defaults still filled in', () => {
  const c = validateProxyConfig({
    appPort: 8080,
    timeouts: { connectMs: 100 },
    destinations: [{ listen: '[::1]:0', target: 'db.local:5432' }],
    opaquePorts: [],
  });
  assert.equal(c.appPort, 8080);
  assert.equal(c.timeouts.connectMs, 100);
  assert.equal(c.timeouts.idleMs, 300_000);
  assert.deepEqual(c.destinations, [{ listen: '[::1]:0', target: 'db.local:5432', protocol: 'auto' }]);
  assert.deepEqual(c.opaquePorts, []);
});

test('errors name the field that is wrong', () => {
  const cases: [unknown, string, RegExp][] = [
    [{ timeouts: { connectMs: 'fast' } }, 'timeouts.connectMs', /number/],
    [{ timeouts: { connectMs: -1 } }, 'timeouts.connectMs', /negative/],
    [{ timeouts: { connectMs: 1.5 } }, 'timeouts.connectMs', /whole/],
    [{ timeouts: { connectMsx: 5 } }, 'timeouts.connectMsx', /unknown setting/],
    [{ bogus: true }, 'bogus', /unknown setting/],
    [{ appPort: 0 }, 'appPort', /1\.\.65535/],
    [{ appPort: 65536 }, 'appPort', /1\.\.65535/],
    [{ outboundListen: 'localhost' }, 'outboundListen', /HOST:PORT/],
    [{ outboundListen: '127.0.0.1:99999' }, 'outboundListen', /0\.\.65535/],
    [{ mode: 'sideways' }, 'mode', /explicit or transparent/],
    [{ opaquePorts: [80, '81'] }, 'opaquePorts.1', /port 1\.\.65535/],
    [{ opaquePorts: 80 }, 'opaquePorts', /list/],
    [{ destinations: [{ listen: '127.0.0.1:0' }] }, 'destinations.0.target', /./],
    [
      { destinations: [{ listen: '127.0.0.1:0', target: 'a:1', protocol: 'quic' }] },
      'destinations.0.protocol',
      /auto/,
    ],
    [{ log: { level: 'loud' } }, 'log.level', /trace/],
    [{ http1: { maxHeaders: 0 } }, 'http1.maxHeaders', /at least 1/],
    [{ workload: { appPortNames: ['http'] } }, 'workload.appPortNames', /needs appPort/],
    [{ appPort: 80, workload: { appPortNames: ['HTTP'] } }, 'workload.appPortNames.0', /DNS label/],
  ];
  for (const [input, field, message] of cases) {
    const err = configError(() => validateProxyConfig(input));
    assert.equal(err.field, field, `field of ${JSON.stringify(input)}`);
    assert.ok(err.message.startsWith(`${field}: `), err.message);
    assert.match(err.message, message);
  }
});

test('a configuration that is not a mapping is a ConfigError', () => {
  for (const input of [null, undefined, 42, 'appPort: 1', [{}], true]) {
    configError(() => validateProxyConfig(input));
  }
});

test('a list where a mapping belongs is a ConfigError', () => {
  configError(() => validateProxyConfig([]));
  assert.equal(configError(() => validateProxyConfig({ detect: [] })).field, 'detect');
  assert.equal(configError(() => validateProxyConfig({ timeouts: [5] })).field, 'timeouts');
});

test('readConfigFile: YAML mappings, empty files, and clear errors', async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'trellis-config-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const file = (name: string, text: string) => {
    const p = path.join(dir, name);
    writeFileSync(p, text);
    return p;
  };
  const ok = await readConfigFile(file('ok.yaml', 'appPort: 8080\ntimeouts:\n  connectMs: 50\n'));
  assert.deepEqual(ok.settings, { appPort: 8080, timeouts: { connectMs: 50 } });
  assert.equal(ok.at('timeouts.connectMs'), `${path.join(dir, 'ok.yaml')}:3:14`);
  assert.equal(ok.at('timeouts.connectMs', true), `${path.join(dir, 'ok.yaml')}:3:3`);
  // A field that is not there: the nearest enclosing one.
  assert.equal(ok.at('timeouts.idleMs'), `${path.join(dir, 'ok.yaml')}:3:3`);
  const list = await readConfigFile(file('list.yaml', 'destinations:\n  - listen: a\n  - listen: b\n'));
  assert.equal(list.at('destinations.1.listen'), `${path.join(dir, 'list.yaml')}:3:13`);
  assert.deepEqual((await readConfigFile(file('empty.yaml', '# nothing\n'))).settings, {});
  const rejects = async (p: string, message: RegExp) => {
    await assert.rejects(readConfigFile(p), (err: unknown) => {
      assert.ok(err instanceof ConfigError);
      assert.match(err.message, message);
      return true;
    });
  };
  await rejects(file('bad.yaml', 'timeouts: [unclosed\n'), /bad\.yaml:\d+:\d+: not valid YAML/);
  await rejects(file('seq.yaml', '- 1\n- 2\n'), /mapping/);
  await rejects(file('scalar.yaml', '42\n'), /mapping/);
  await rejects(path.join(dir, 'missing.yaml'), /cannot read/);
});

test('splitHostPort handles IPv4, names and bracketed IPv6', () => {
  assert.deepEqual(splitHostPort('127.0.0.1:4140'), { host: '127.0.0.1', port: 4140 });
  assert.deepEqual(splitHostPort('db.local:0'), { host: 'db.local', port: 0 });
  assert.deepEqual(splitHostPort('[::1]:4191'), { host: '::1', port: 4191 });
});

const KEYS = {
  top: [
    'inboundListen',
    'outboundListen',
    'adminListen',
    'appPort',
    'appHost',
    'mode',
    'destinations',
    'opaquePorts',
    'detect',
    'http1',
    'timeouts',
    'pool',
    'log',
    'unknown',
  ],
  nested: [
    'timeoutMs',
    'opaqueCacheMs',
    'opaqueCacheMax',
    'maxRequestLineBytes',
    'maxHeaderBytes',
    'maxHeaders',
    'connectMs',
    'idleMs',
    'requestHeadMs',
    'responseMs',
    'drainGraceMs',
    'maxIdlePerHost',
    'idleTimeoutMs',
    'level',
    'access',
    'listen',
    'target',
    'protocol',
  ],
};

/** Values that are sometimes right and often nearly right for a field of the schema. */
const leaf = fc.oneof(
  fc.integer({ min: -2, max: 70_000 }),
  fc.double(),
  fc.constantFrom('127.0.0.1:0', '[::1]:80', 'host:65536', 'auto', 'opaque', 'info', 'off', 'explicit', ''),
  fc.string(),
  fc.boolean(),
  fc.constant(null),
  fc.constant(undefined),
  fc.array(fc.integer({ min: -1, max: 70_000 }), { maxLength: 3 }),
);
const nested = fc.dictionary(fc.constantFrom(...KEYS.nested), leaf, { maxKeys: 4 });
const nearConfig = fc.dictionary(
  fc.constantFrom(...KEYS.top),
  fc.oneof(leaf, nested, fc.array(nested, { maxLength: 2 })),
  { maxKeys: 6 },
);
const anyInput = fc.anything({
  withBigInt: true,
  withBoxedValues: true,
  withDate: true,
  withMap: true,
  withSet: true,
  withNullPrototype: true,
  withObjectString: true,
  withSparseArray: true,
  withTypedArray: true,
});

test('property: validation throws nothing but ConfigError, and is idempotent', () => {
  fc.assert(
    fc.property(fc.oneof(nearConfig, anyInput), (input) => {
      let config;
      try {
        config = validateProxyConfig(input);
      } catch (err) {
        if (!(err instanceof ConfigError)) throw err;
        assert.equal(typeof err.field, 'string');
        return;
      }
      assert.deepEqual(validateProxyConfig(structuredClone(config)), config);
    }),
    { numRuns: 2000 },
  );
});
