// Tests for the generated wire codecs (src/api/gen/codecs/, written by scripts/gen-api.ts over
// src/api/wire.ts) and the proxy's gRPC clients built on them (src/api/client.ts), against the
// reference: @grpc/proto-loader + protobufjs with src/api/load.ts's options.
//
// For every message of every .proto, random messages are drawn from arbitraries built from
// protobufjs reflection (so a new field is covered without touching this file):
//   (a) protobufjs's bytes decode with our codec to exactly what proto-loader's deserialize gives;
//   (b) our bytes decode with proto-loader to what proto-loader's own bytes decode to;
//   (c) random and mutated bytes either decode or throw a WireError, nothing else, promptly.
// A kitchen-sink proto (every scalar type, packed and unpacked repeats, enums, maps, oneofs) runs
// through the same generator and properties, since the real protos use only some of the types.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import * as protoLoader from '@grpc/proto-loader';
import fc from 'fast-check';
import protobuf from 'protobufjs';
import { codecSource } from '../../scripts/gen-codecs.ts';
import {
  destinationService,
  identityService,
  policyService,
  routeService,
  reconnectBackoffOptions,
} from '../../src/api/client.ts';
import { LOADER_OPTIONS, reconnectBackoffOptions as loadReexport } from '../../src/api/load.ts';
import { WireError } from '../../src/api/wire.ts';

const apiDir = fileURLToPath(new URL('../../src/api/', import.meta.url));
const RUNS = 300;

interface Codec {
  encode(message: unknown): Buffer;
  decode(bytes: Uint8Array): unknown;
}
type Codecs = Record<string, Codec>;

/** An arbitrary of input objects for `type`, from its reflection (depth-limited for recursion). */
function messageArb(type: protobuf.Type, depth = 0): fc.Arbitrary<Record<string, unknown>> {
  const plain: Record<string, fc.Arbitrary<unknown>> = {};
  const oneofs: fc.Arbitrary<Record<string, unknown>>[] = [];
  for (const field of type.fieldsArray) {
    if (field.partOf) continue;
    plain[field.name] = fieldArb(field, depth);
  }
  for (const oneof of type.oneofsArray) {
    const members = oneof.fieldsArray.map((f) => fieldArb(f, depth).map((v) => ({ [f.name]: v })));
    oneofs.push(fc.oneof(fc.constant({}), ...members));
  }
  return fc
    .tuple(fc.record(plain, { requiredKeys: [] }), ...oneofs)
    .map(([base, ...chosen]) => Object.assign({}, base, ...chosen) as Record<string, unknown>);
}

function fieldArb(field: protobuf.Field, depth: number): fc.Arbitrary<unknown> {
  if (field instanceof protobuf.MapField) {
    // "__proto__" is left out: protobufjs turns it into a prototype change, we keep it as an entry.
    const key = fc.string({ unit: 'binary', maxLength: 8 }).filter((k) => k !== '__proto__');
    return fc.dictionary(key, scalarArb(field.type, null), { maxKeys: 4 });
  }
  const one = scalarArb(field.type, field.resolvedType, depth);
  return field.repeated ? fc.array(one, { maxLength: 4 }) : one;
}

function scalarArb(
  type: string,
  resolved: protobuf.ReflectionObject | null,
  depth = 0,
): fc.Arbitrary<unknown> {
  if (resolved instanceof protobuf.Type) {
    return depth > 3 ? fc.constant({}) : messageArb(resolved, depth + 1);
  }
  if (resolved instanceof protobuf.Enum) {
    // Names, and numbers (known or not: proto-loader passes unknown numbers through as numbers).
    return fc.oneof(fc.constantFrom(...Object.keys(resolved.values)), fc.integer({ min: -3, max: 40 }));
  }
  const maxSafe = Number.MAX_SAFE_INTEGER;
  switch (type) {
    case 'string':
      return fc.string({ unit: 'binary', maxLength: 12 });
    case 'bytes':
      return fc.uint8Array({ maxLength: 12 }).map((b) => Buffer.from(b));
    case 'bool':
      return fc.boolean();
    case 'uint32':
    case 'fixed32':
      return fc.oneof(fc.nat(300), fc.nat(2 ** 32 - 1));
    case 'int32':
    case 'sint32':
    case 'sfixed32':
      return fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 });
    case 'uint64':
    case 'fixed64':
      return fc.oneof(fc.nat(300), fc.nat(maxSafe));
    case 'int64':
    case 'sint64':
    case 'sfixed64':
      return fc.oneof(fc.integer({ min: -300, max: 300 }), fc.integer({ min: -maxSafe, max: maxSafe }));
    case 'double':
      return fc.oneof(fc.constantFrom(0, -0, Infinity, -Infinity, NaN), fc.double());
    case 'float':
      return fc.oneof(fc.constantFrom(0, -0, Infinity, -Infinity, NaN), fc.float());
    default:
      throw new Error(`no arbitrary for field type ${type}`);
  }
}

/** The proto-loader reference for each message of a file: what a gRPC peer with load.ts does. */
function reference(
  file: string,
): Map<string, { serialize: (m: unknown) => Buffer; deserialize: (b: Buffer) => unknown }> {
  const definition = protoLoader.loadSync(file, LOADER_OPTIONS);
  const out = new Map();
  for (const [name, value] of Object.entries(definition)) {
    if ('serialize' in value && 'deserialize' in value) out.set(name, value);
  }
  return out;
}

function messagesOf(file: string): protobuf.Type[] {
  const root = new protobuf.Root().loadSync(file, { keepCase: false });
  root.resolveAll();
  const out: protobuf.Type[] = [];
  const walk = (ns: protobuf.NamespaceBase): void => {
    for (const n of ns.nestedArray) {
      if (n instanceof protobuf.Type) out.push(n);
      if (n instanceof protobuf.Namespace || n instanceof protobuf.Type) walk(n);
    }
  };
  walk(root);
  return out;
}

/** A valid encoding with a few bytes changed, cut or added. */
const mutated = (bytes: Buffer): fc.Arbitrary<Buffer> =>
  fc
    .tuple(
      fc.array(fc.tuple(fc.nat(), fc.nat(255)), { maxLength: 4 }),
      fc.nat(),
      fc.uint8Array({ maxLength: 4 }),
    )
    .map(([edits, cut, extra]) => {
      const b = Buffer.from(bytes);
      for (const [at, value] of edits) if (b.length > 0) b[at % b.length] = value;
      return Buffer.concat([b.subarray(0, b.length === 0 ? 0 : cut % (b.length + 1)), extra]);
    });

function decodeIsSafe(codec: Codec, bytes: Uint8Array): void {
  try {
    codec.decode(bytes);
  } catch (err) {
    assert.ok(err instanceof WireError, `decode threw something other than a WireError: ${String(err)}`);
    assert.ok(err.message.length > 0);
  }
}

/** Runs properties (a), (b), (c) over every message of `file` with `codecs`. */
function checkFile(file: string, codecs: Codecs): number {
  const ref = reference(file);
  let checked = 0;
  for (const type of messagesOf(file)) {
    const name = type.fullName.slice(1);
    const codec = codecs[name];
    const pl = ref.get(name);
    assert.ok(codec, `no codec generated for ${name}`);
    assert.ok(pl, `proto-loader has no ${name}`);
    const arb = messageArb(type);
    // (a) protobufjs's bytes -> our decoder == proto-loader's decoder.
    fc.assert(
      fc.property(arb, (message) => {
        const bytes = pl.serialize(message);
        assert.deepStrictEqual(codec.decode(bytes), pl.deserialize(bytes), name);
      }),
      { numRuns: RUNS },
    );
    // (b) our bytes -> proto-loader's decoder == proto-loader's round trip (and ours agrees).
    fc.assert(
      fc.property(arb, (message) => {
        const expected = pl.deserialize(pl.serialize(message));
        const ours = codec.encode(message);
        assert.deepStrictEqual(pl.deserialize(ours), expected, name);
        assert.deepStrictEqual(codec.decode(ours), expected, name);
      }),
      { numRuns: RUNS },
    );
    // (c) random bytes, and near-valid ones: a result or a WireError.
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), (bytes) => decodeIsSafe(codec, bytes)),
      { numRuns: RUNS },
    );
    fc.assert(
      fc.property(
        arb.chain((m) => mutated(pl.serialize(m))),
        (bytes) => decodeIsSafe(codec, bytes),
      ),
      { numRuns: RUNS },
    );
    checked++;
  }
  return checked;
}

const PROTOS = readdirSync(apiDir).filter((f) => f.endsWith('.proto'));

for (const proto of PROTOS) {
  test(
    `${proto}: every message decodes and encodes as proto-loader does (fast-check)`,
    { timeout: 120_000 },
    async () => {
      const mod = (await import(`../../src/api/gen/codecs/${proto.replace(/\.proto$/, '.ts')}`)) as {
        CODECS: Codecs;
      };
      const checked = checkFile(join(apiDir, proto), mod.CODECS);
      assert.equal(checked, Object.keys(mod.CODECS).length, 'every generated codec was checked');
      assert.ok(checked >= 2);
    },
  );
}

const KITCHEN_SINK = `
syntax = "proto3";
package sink.v1;
enum Color { RED = 0; GREEN = 1; BLUE = 5; }
message Inner { int32 a = 1; string b = 2; }
message Sink {
  int32 i32 = 1; uint32 u32 = 2; sint32 s32 = 3; int64 i64 = 4; uint64 u64 = 5; sint64 s64 = 6;
  fixed32 f32 = 7; sfixed32 sf32 = 8; fixed64 f64 = 9; sfixed64 sf64 = 10; bool flag = 11;
  float fl = 12; double db = 13; string str = 14; bytes raw = 15; Color color = 16; Inner inner = 17;
  repeated int32 packed_i32 = 18; repeated sint64 packed_s64 = 19 [packed = true];
  repeated uint32 unpacked_u32 = 20 [packed = false]; repeated Color colors = 21;
  repeated double doubles = 22; repeated bool flags = 23; repeated string strs = 24;
  repeated bytes raws = 25; repeated Inner inners = 26; map<string, int64> counts = 27;
  map<string, string> labels = 28;
  oneof choice { Inner picked = 29; string named = 30; uint32 numbered = 31; }
  oneof other_choice { bool yes = 32; Color hue = 33; }
}
`;

test(
  'kitchen sink: every scalar type, packed and unpacked repeats, maps, oneofs (fast-check)',
  { timeout: 120_000 },
  async () => {
    const dir = mkdtempSync(join(tmpdir(), 'trellis-api-codecs-'));
    try {
      const proto = join(dir, 'sink.proto');
      writeFileSync(proto, KITCHEN_SINK);
      const wireUrl = pathToFileURL(join(apiDir, 'wire.ts')).href;
      const source = codecSource(proto, 'sink.proto').replace("'../../wire.ts'", `'${wireUrl}'`);
      writeFileSync(join(dir, 'sink.ts'), source);
      const mod = (await import(pathToFileURL(join(dir, 'sink.ts')).href)) as { CODECS: Codecs };
      assert.equal(checkFile(proto, mod.CODECS), 2);

      // Packed and unpacked encodings of the same repeated field decode alike (proto requires it).
      const sink = mod.CODECS['sink.v1.Sink']!;
      const packed = Buffer.from([0x92, 0x01, 0x03, 0x01, 0x96, 0x01]); // field 18, packed [1, 150]
      const unpacked = Buffer.from([0x90, 0x01, 0x01, 0x90, 0x01, 0x96, 0x01]); // field 18 twice
      const a = sink.decode(packed) as { packedI32: number[] };
      assert.deepEqual(a.packedI32, [1, 150]);
      assert.deepStrictEqual(sink.decode(unpacked), a);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  },
);

test('malformed input throws a WireError that says what is wrong', async () => {
  const { CODECS } = await import('../../src/api/gen/codecs/destination.ts');
  const update = CODECS['trellis.destination.v1.Update'];
  const cases: [number[], RegExp][] = [
    [[0x0a, 0x05, 0x01], /length 5 .* runs past the end/], // add: 5 bytes announced, 1 there
    [[0x20], /truncated varint/], // reset: no value
    [[0x20, ...Array(10).fill(0xff), 0x01], /varint longer than 10 bytes/],
    [[0x26], /invalid wire type 6/], // field 4, wire type 6
    [[0x23], /invalid wire type 3/], // a group start: refused, not skipped
    [[0x02, 0x00], /invalid field number 0/],
    [[0x0d, 0x01, 0x02], /truncated fixed32 field/], // field 1 as fixed32: skipped as unknown, cut
  ];
  for (const [bytes, message] of cases) {
    assert.throws(
      () => update.decode(Buffer.from(bytes)),
      (err: unknown) => {
        assert.ok(err instanceof WireError);
        assert.match(err.message, message);
        return true;
      },
    );
  }
  // A known field with a different wire type is skipped, as protobuf's own libraries do.
  assert.deepStrictEqual(update.decode(Buffer.from([0x25, 1, 2, 3, 4, 0x20, 0x01])), { reset: true });
  // Proto semantics for a oneof: the last member on the wire wins and clears the others.
  assert.deepStrictEqual(update.decode(Buffer.from([0x0a, 0x00, 0x1a, 0x02, 0x08, 0x01])), {
    reset: false,
    noEndpoints: { exists: true, ports: [] },
    update: 'noEndpoints',
  });
});

test('large messages: multi-byte length prefixes on nested messages, as proto-loader reads them', async () => {
  const { CODECS } = await import('../../src/api/gen/codecs/destination.ts');
  const { CODECS: ID } = await import('../../src/api/gen/codecs/identity.ts');
  const ref = reference(join(apiDir, 'destination.proto'));
  const update = ref.get('trellis.destination.v1.Update')!;
  // 2,000 endpoints: the AddSet is ~150 KB (a 3-byte prefix), each endpoint over 128 bytes (2).
  const endpoints = Array.from({ length: 2000 }, (_, i) => ({
    address: { ip: `10.0.${i >> 8}.${i & 255}`, port: 8080 },
    weight: i,
    labels: { namespace: 'default', service: 'web', workload: `web-${i}`, zone: 'z'.repeat(40) },
    meshed: true,
    identity: `spiffe://cluster.local/ns/default/sa/web-${i}`,
    protocolHint: 'H2' as const,
  }));
  const message = { add: { endpoints }, reset: true };
  const ours = CODECS['trellis.destination.v1.Update'].encode(message);
  assert.ok(ours.length > 100_000);
  const expected = update.deserialize(update.serialize(message));
  assert.deepStrictEqual(update.deserialize(ours), expected);
  assert.deepStrictEqual(CODECS['trellis.destination.v1.Update'].decode(ours), expected);
  // A 64 KB certificate in a unary response (bytes, not nested, but a 3-byte length).
  const cert = Buffer.alloc(65_536, 7);
  const response = ID['trellis.identity.v1.CertifyResponse'];
  const decoded = response.decode(response.encode({ leafCertificate: cert, validUntilMs: 2 ** 52 + 1 }));
  assert.deepEqual(decoded.leafCertificate, cert);
  assert.equal(decoded.validUntilMs, 2 ** 52 + 1);
});

test('encoding refuses values proto-loader would not mean: unknown enum names, non-arrays', async () => {
  const { CODECS } = await import('../../src/api/gen/codecs/destination.ts');
  const endpoint = CODECS['trellis.destination.v1.Endpoint'];
  assert.throws(
    () => endpoint.encode({ protocolHint: 'HTTP3' } as never),
    /Endpoint.protocolHint: unknown enum value "HTTP3"/,
  );
  const addSet = CODECS['trellis.destination.v1.AddSet'];
  assert.throws(() => addSet.encode({ endpoints: {} } as never), /AddSet.endpoints: array expected/);
});

test('client service definitions match what proto-loader gives the control plane', () => {
  const ours: [string, Record<string, unknown>][] = [
    ['destination.proto', destinationService],
    ['policy.proto', policyService],
    ['route.proto', routeService],
    ['identity.proto', identityService],
  ];
  for (const [proto, service] of ours) {
    const definition = protoLoader.loadSync(join(apiDir, proto), LOADER_OPTIONS);
    const services = Object.values(definition).filter((v) => !('format' in v));
    assert.equal(services.length, 1, proto);
    const reference = services[0] as Record<string, protoLoader.MethodDefinition<unknown, unknown>>;
    assert.deepEqual(Object.keys(service).sort(), Object.keys(reference).sort(), proto);
    for (const [name, ref] of Object.entries(reference)) {
      const m = service[name] as protoLoader.MethodDefinition<unknown, unknown>;
      assert.equal(m.path, ref.path);
      assert.equal(m.requestStream, ref.requestStream);
      assert.equal(m.responseStream, ref.responseStream);
      assert.equal(m.originalName, ref.originalName);
    }
  }
  assert.equal(loadReexport, reconnectBackoffOptions);
});

test('the proxy clients load neither @grpc/proto-loader nor protobufjs', () => {
  const script = `
    await import(${JSON.stringify(new URL('../../src/proxy/resolve/destination-client.ts', import.meta.url).href)});
    await import(${JSON.stringify(new URL('../../src/proxy/policy/watch-client.ts', import.meta.url).href)});
    await import(${JSON.stringify(new URL('../../src/proxy/route/watch-client.ts', import.meta.url).href)});
    await import(${JSON.stringify(new URL('../../src/proxy/identity/identity-client.ts', import.meta.url).href)});
    const { createRequire } = await import('node:module');
    const loaded = Object.keys(createRequire(import.meta.url).cache);
    console.log(JSON.stringify({ grpc: loaded.some((p) => p.includes('grpc-js')), bad: loaded.filter((p) => /proto-loader|protobufjs/.test(p)) }));
  `;
  const run = spawnSync(process.execPath, ['--input-type=module', '-e', script], {
    encoding: 'utf8',
    timeout: 60_000,
  });
  assert.equal(run.status, 0, run.stderr);
  const result = JSON.parse(run.stdout.trim().split('\n').pop()!) as { grpc: boolean; bad: string[] };
  assert.equal(result.grpc, true, 'grpc-js is loaded (the check sees CommonJS modules)');
  assert.deepEqual(result.bad, []);
});

test('a proxy that never names a service never loads @grpc/grpc-js; the first name it resolves does', () => {
  const src = (p: string) => JSON.stringify(new URL(`../../src/${p}`, import.meta.url).href);
  const script = `
    import { registerHooks } from 'node:module';
    import net from 'node:net';
    const seen = [];
    registerHooks({ resolve(specifier, context, next) { seen.push(specifier); return next(specifier, context); } });
    const { startProxy } = await import(${src('proxy/proxy.ts')});
    const { validateProxyConfig } = await import(${src('proxy/config.ts')});
    const { silentLogger } = await import(${src('core/log.ts')});
    const app = net.createServer((s) => s.end('HTTP/1.1 204 No Content\\r\\n\\r\\n')).listen(0, '127.0.0.1');
    await new Promise((r) => app.once('listening', r));
    const proxy = await startProxy(
      validateProxyConfig({
        inboundListen: '127.0.0.1:0',
        outboundListen: '127.0.0.1:0',
        adminListen: '127.0.0.1:0',
        discovery: { address: '127.0.0.1:1', failFastMs: 200 },
      }),
      silentLogger,
    );
    const outbound = Number(proxy.addresses.outbound.split(':').pop());
    const ask = (target) =>
      new Promise((resolve) => {
        const s = net.connect(outbound, '127.0.0.1', () => s.write('GET http://' + target + '/ HTTP/1.1\\r\\nHost: ' + target + '\\r\\nConnection: close\\r\\n\\r\\n'));
        let got = '';
        s.on('data', (d) => (got += d));
        s.on('close', () => resolve(got.slice(0, 12)));
        s.on('error', () => {});
      });
    const direct = await ask('127.0.0.1:' + app.address().port);
    const before = seen.some((s) => s.includes('@grpc/grpc-js'));
    await ask('web.default:80');
    const after = seen.some((s) => s.includes('@grpc/grpc-js'));
    await proxy.shutdown(100);
    app.close();
    console.log(JSON.stringify({ direct, before, after }));
    process.exit(0);
  `;
  const run = spawnSync(process.execPath, ['--input-type=module', '-e', script], {
    encoding: 'utf8',
    timeout: 60_000,
  });
  assert.equal(run.status, 0, run.stderr);
  const result = JSON.parse(run.stdout.trim().split('\n').pop()!) as {
    direct: string;
    before: boolean;
    after: boolean;
  };
  assert.equal(result.direct, 'HTTP/1.1 204', 'the direct request went through');
  assert.equal(result.before, false, 'no gRPC for a proxy that only forwarded to an address');
  assert.equal(result.after, true, 'the first service name loads the Destination client');
});
