// The wire codec generator behind scripts/gen-api.ts: from a .proto file (protobufjs reflection,
// at build time only), straight-line TypeScript that encodes and decodes its messages over
// src/api/wire.ts, so that a proxy speaks the control-plane APIs without loading the protos at run
// time (src/api/client.ts says why).
import protobuf from 'protobufjs';

// One read_<Message> / write_<Message> pair per message, straight-line code over src/api/wire.ts.
// Decoding gives exactly what proto-loader gives with src/api/load.ts's options: camelCase names,
// every field present with its default (null for an unset message), enums by name (an unknown
// number stays a number), oneof virtual fields naming the member set. Unlike protobufjs, a field
// whose wire type does not match the schema is skipped as unknown, and a oneof member clears the
// members read before it (proto semantics; protobufjs keeps them all). Test: api-codecs.test.ts.

type WireKind = 'varint' | 'fixed64' | 'fixed32' | 'bytes';
const SCALARS: Record<string, { wire: WireKind; dflt: string }> = {
  int32: { wire: 'varint', dflt: '0' },
  uint32: { wire: 'varint', dflt: '0' },
  sint32: { wire: 'varint', dflt: '0' },
  int64: { wire: 'varint', dflt: '0' },
  uint64: { wire: 'varint', dflt: '0' },
  sint64: { wire: 'varint', dflt: '0' },
  bool: { wire: 'varint', dflt: 'false' },
  fixed32: { wire: 'fixed32', dflt: '0' },
  sfixed32: { wire: 'fixed32', dflt: '0' },
  float: { wire: 'fixed32', dflt: '0' },
  fixed64: { wire: 'fixed64', dflt: '0' },
  sfixed64: { wire: 'fixed64', dflt: '0' },
  double: { wire: 'fixed64', dflt: '0' },
  string: { wire: 'bytes', dflt: "''" },
  bytes: { wire: 'bytes', dflt: 'Buffer.alloc(0)' },
};
const WIRE: Record<WireKind, number> = { varint: 0, fixed64: 1, bytes: 2, fixed32: 5 };
const LONGS = new Set(['int64', 'uint64', 'sint64', 'fixed64', 'sfixed64']);

/** A protobufjs full name ('.a.b.C') as an identifier ('a_b_C'). */
const ident = (fullName: string): string => fullName.replace(/^\./, '').replace(/\./g, '_');

function messagesOf(ns: protobuf.NamespaceBase): protobuf.Type[] {
  const out: protobuf.Type[] = [];
  for (const nested of ns.nestedArray) {
    if (nested instanceof protobuf.Type) {
      // proto-loader-gen-types names nested messages differently; none are needed yet.
      if (nested.nestedArray.some((n) => n instanceof protobuf.Type)) {
        throw new Error(`${nested.fullName}: nested message types are not supported by the codec generator`);
      }
      out.push(nested);
    } else if (nested instanceof protobuf.Namespace) out.push(...messagesOf(nested));
  }
  return out;
}

function enumTables(e: protobuf.Enum): string {
  const id = ident(e.fullName);
  const byNumber = Object.entries(e.values).map(([name, n]) => `${n}: '${name}'`);
  // First name wins for aliases, as protobufjs's valuesById.
  const seen = new Set<number>();
  const unique = byNumber.filter((_, i) => {
    const n = Object.values(e.values)[i]!;
    if (seen.has(n)) return false;
    seen.add(n);
    return true;
  });
  const byName = Object.entries(e.values).map(([name, n]) => `${name}: ${n}`);
  return (
    `const ${id}_NAMES: Record<number, string> = { ${unique.join(', ')} };\n` +
    `const ${id}_NUMBERS: Record<string, number> = { ${byName.join(', ')} };\n`
  );
}

/** The statement that reads one value of `type` (scalar, enum or message) as an expression. */
function readExpr(field: protobuf.Field, type: string, resolved: protobuf.ReflectionObject | null): string {
  if (resolved instanceof protobuf.Enum) return `enumName(r.int32(), ${ident(resolved.fullName)}_NAMES)`;
  if (resolved instanceof protobuf.Type) return `r.message(read_${ident(resolved.fullName)})`;
  if (!(type in SCALARS)) throw new Error(`${field.fullName}: unsupported type ${type}`);
  return `r.${type}()`;
}

function wireOf(type: string, resolved: protobuf.ReflectionObject | null): number {
  if (resolved instanceof protobuf.Enum) return 0;
  if (resolved instanceof protobuf.Type) return 2;
  return WIRE[SCALARS[type]!.wire];
}

function writeStmt(field: protobuf.Field, type: string, resolved: unknown, num: number, v: string): string {
  const where = `'${field.parent!.name}.${field.name}'`;
  if (resolved instanceof protobuf.Enum) {
    return `w.int32(${num}, enumNumber(${v}, ${ident(resolved.fullName)}_NUMBERS, ${where}))`;
  }
  if (resolved instanceof protobuf.Type) return `w.message(${num}, ${v}, write_${ident(resolved.fullName)})`;
  if (LONGS.has(type)) return `w.${type}(${num}, ${v}, ${where})`;
  if (type === 'string') return `w.string(${num}, String(${v}))`;
  if (type === 'bool') return `w.bool(${num}, Boolean(${v}))`;
  if (type === 'bytes') return `w.bytes(${num}, ${v})`;
  return `w.${type}(${num}, Number(${v}))`;
}

function messageCode(type: protobuf.Type, typeNames: Map<string, string>): string {
  const id = ident(type.fullName);
  const tn = typeNames.get(type.fullName)!;
  const defaults: string[] = [];
  const cases: string[] = [];
  const writes: string[] = [];
  for (const field of type.fieldsArray) {
    const f = field.name;
    const resolved = field.resolvedType;
    const oneof = field.partOf;
    if (field instanceof protobuf.MapField) {
      if (field.keyType !== 'string' || !(field.type in SCALARS) || resolved !== null) {
        throw new Error(`${field.fullName}: only map<string, scalar> is supported by the codec generator`);
      }
      defaults.push(`${f}: {}`);
      const dflt = SCALARS[field.type]!.dflt;
      const valueWire = WIRE[SCALARS[field.type]!.wire];
      cases.push(
        `case ${field.id}: if ((tag & 7) === 2) { const [k, v] = r.message((r) => { let k = ''; let v = ${dflt}; ` +
          `while (r.pos < r.end) { const t = r.tag(); if (t === 10) k = r.string(); ` +
          `else if (t === ${(2 << 3) | valueWire}) v = r.${field.type}(); else r.skip(t & 7); } return [k, v] as const; }); ` +
          `setEntry(m.${f}, k, v); continue; } break;`,
      );
      writes.push(
        `if (m.${f} != null) for (const [k, v] of Object.entries(m.${f})) ` +
          `w.message(${field.id}, v, (w, v) => { w.string(1, k); ${writeStmt(field, field.type, null, 2, 'v')}; });`,
      );
      continue;
    }
    const wire = wireOf(field.type, resolved);
    const read = readExpr(field, field.type, resolved);
    const outType = `${tn}__Output['${f}']`;
    if (field.repeated) {
      defaults.push(`${f}: []`);
      const packable = wire !== 2;
      const cond = packable ? `(tag & 7) === ${wire} || (tag & 7) === 2` : `(tag & 7) === ${wire}`;
      const push =
        resolved instanceof protobuf.Enum
          ? `m.${f}.push(${read} as ${outType}[number])`
          : `m.${f}.push(${read})`;
      const body = packable ? `r.repeated(tag & 7, () => ${push});` : `${push};`;
      cases.push(`case ${field.id}: if (${cond}) { ${body} continue; } break;`);
      writes.push(
        `if (m.${f} != null) { if (!Array.isArray(m.${f})) throw new Error('${type.name}.${f}: array expected'); ` +
          `for (const v of m.${f}) ${writeStmt(field, field.type, resolved, field.id, 'v')}; }`,
      );
      continue;
    }
    let dflt: string;
    if (resolved instanceof protobuf.Type) dflt = 'null';
    else if (resolved instanceof protobuf.Enum) dflt = `'${Object.keys(resolved.values)[0]}'`;
    else dflt = SCALARS[field.type]!.dflt;
    // Only an enum needs a cast: its output type lists the names, and an unknown number stays one.
    let set = resolved instanceof protobuf.Enum ? `m.${f} = ${read} as ${outType};` : `m.${f} = ${read};`;
    if (oneof) {
      const others = oneof.fieldsArray.filter((o) => o !== field).map((o) => `delete m.${o.name};`);
      set += ` ${others.join(' ')} m.${oneof.name} = '${f}';`;
    } else defaults.push(`${f}: ${dflt}`);
    cases.push(`case ${field.id}: if ((tag & 7) === ${wire}) { ${set} continue; } break;`);
    // Proto3 leaves defaults off the wire, except in a oneof, where being set is the information.
    // (-0 is not the default: its bits differ, so it is written.)
    let skipDefault = ` && m.${f} !== ${dflt}`;
    if (oneof || resolved !== null) skipDefault = '';
    else if (field.type === 'bytes') skipDefault = ` && m.${f}.length !== 0`;
    else if (field.type === 'double' || field.type === 'float') skipDefault = ` && !Object.is(m.${f}, 0)`;
    writes.push(
      `if (m.${f} != null${skipDefault}) ${writeStmt(field, field.type, resolved, field.id, `m.${f}`)};`,
    );
  }
  return (
    `function read_${id}(r: Reader): ${tn}__Output {\n` +
    `  const m: ${tn}__Output = { ${defaults.join(', ')} };\n` +
    `  while (r.pos < r.end) {\n    const tag = r.tag();\n    switch (tag >>> 3) {\n` +
    cases.map((c) => `      ${c}\n`).join('') +
    `    }\n    r.skip(tag & 7);\n  }\n  return m;\n}\n\n` +
    `function write_${id}(w: Writer, m: ${tn}): void {\n` +
    writes.map((s) => `  ${s}\n`).join('') +
    `}\n\n` +
    `/** ${type.fullName.slice(1)}: bytes -> the object proto-loader would give (throws WireError). */\n` +
    `export function decode${type.name}(buf: Uint8Array): ${tn}__Output {\n  return read_${id}(new Reader(buf));\n}\n\n` +
    `/** ${type.fullName.slice(1)}: an object proto-loader would accept -> bytes. */\n` +
    `export function encode${type.name}(m: ${tn}): Buffer {\n  const w = new Writer();\n  write_${id}(w, m);\n  return w.finish();\n}\n\n`
  );
}

/** The codec module of one .proto file. */
export function codecSource(protoPath: string, displayPath: string): string {
  const root = new protobuf.Root();
  root.loadSync(protoPath, { keepCase: false });
  root.resolveAll();
  const types = messagesOf(root);
  const typeNames = new Map(types.map((t) => [t.fullName, ident(t.fullName)]));
  const enums: protobuf.Enum[] = [];
  for (const t of types) {
    for (const field of t.fieldsArray) {
      const rt = field.resolvedType;
      if (rt instanceof protobuf.Type && !typeNames.has(rt.fullName)) {
        throw new Error(
          `${field.fullName}: messages from other files are not supported by the codec generator`,
        );
      }
      if (rt instanceof protobuf.Enum && !enums.includes(rt)) enums.push(rt);
    }
  }
  const imports = types.map((t) => {
    const n = ident(t.fullName);
    const path = `../${t.fullName.slice(1).replace(/\./g, '/')}.ts`;
    return `import type { ${t.name} as ${n}, ${t.name}__Output as ${n}__Output } from '${path}';\n`;
  });
  const registry = types.map(
    (t) => `  '${t.fullName.slice(1)}': { encode: encode${t.name}, decode: decode${t.name} },\n`,
  );
  const body = enums.map(enumTables).join('') + '\n' + types.map((t) => messageCode(t, typeNames)).join('');
  // Import only the helpers the body uses (they depend on what the proto holds).
  const helpers = ['enumName', 'enumNumber', 'Reader', 'setEntry', 'Writer'].filter((h) =>
    body.includes(`${h}(`),
  );
  return (
    `// Generated by scripts/gen-api.ts from ${displayPath}: the wire codec of each message. Do not edit.\n` +
    `import { ${helpers.join(', ')} } from '../../wire.ts';\n` +
    imports.join('') +
    '\n' +
    body +
    `/** Every message of the file by full name (the tests check each against proto-loader). */\n` +
    `export const CODECS = {\n${registry.join('')}} as const;\n`
  );
}
