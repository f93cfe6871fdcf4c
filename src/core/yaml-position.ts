// Where a setting is in a YAML text, so that an error in a file names its line and column as well
// as its field (`proxy.yaml:3:14: timeouts.connectMs: expected a number of milliseconds`). Shared
// by `trellis apply`'s resources (src/control/resources.ts), the proxy's --config file and the
// injector's configuration. Loaded only where a YAML file is read: the yaml module costs memory.
import {
  isMap,
  isPair,
  isScalar,
  isSeq,
  LineCounter,
  parseDocument,
  type Document,
  type Pair,
  type YAMLMap,
} from 'yaml';

/** A field's path, as a schema's issue gives it. */
export type FieldPath = readonly (string | number)[];

/**
 * The offset of the value at `path` in `document` (of its key when `atKey`, as for an unknown
 * setting), or of the nearest enclosing node that exists.
 */
export function offsetOfPath(document: Document.Parsed, path: FieldPath, atKey = false): number {
  let node: unknown = document.contents;
  let offset = document.contents?.range[0] ?? document.range[0];
  for (const [i, key] of path.entries()) {
    if (isMap(node)) {
      const pair = pairsOf(node).get(String(key));
      if (pair === undefined) break;
      const keyNode = pair.key as { range?: [number, number, number] };
      const valueNode = pair.value as { range?: [number, number, number] } | null;
      const onKey = atKey && i === path.length - 1;
      offset = (onKey ? keyNode.range?.[0] : valueNode?.range?.[0]) ?? keyNode.range?.[0] ?? offset;
      node = pair.value;
    } else if (isSeq(node) && typeof key === 'number' && node.items[key] !== undefined) {
      node = node.items[key];
      offset = (node as { range?: [number, number, number] }).range?.[0] ?? offset;
    } else break;
  }
  return offset;
}

/**
 * Parse options for every YAML text Trellis reads: the yaml library's own check for repeated keys
 * compares each key of a mapping with every key before it. A mapping of 40,000 keys (an annotations
 * list, a state file) took 47 s to parse with it and 0.7 s without; repeatedKeyOffset does the same
 * check in one pass, and callers report what it finds as the library did.
 */
export const YAML_OPTIONS = { prettyErrors: false, uniqueKeys: false } as const;

/** The library's message for a repeated key, kept so that errors read as before. */
export const REPEATED_KEY = 'Map keys must be unique';

/**
 * The offset of the first key that repeats an earlier key of its mapping, anywhere in `root`
 * (null when none). Scalar keys repeat when they name the same property of the parsed object (the
 * yaml library's toJS makes a key's value a string: `1`, `1.0` and `"1"` are one property, as are
 * `true` and `"true"`, `~` and `""`, two `.nan`): the library's own check compared the values, so
 * the later of such keys silently replaced the earlier. YAML 1.1 merge keys (`<<`) are not
 * properties; a mapping, list or alias used as a key is never the same as another.
 */
export function repeatedKeyOffset(root: unknown): number | null {
  const pending: unknown[] = [root];
  while (pending.length > 0) {
    const node = pending.pop();
    if (isMap(node)) {
      const seen = new Set<string>();
      for (const pair of node.items) {
        const key = pair.key;
        if (isScalar(key)) {
          const name = propertyName(key.value);
          if (name !== null) {
            if (seen.has(name)) return key.range?.[0] ?? 0;
            seen.add(name);
          }
        } else pending.push(key);
        pending.push(pair.value);
      }
    } else if (isSeq(node)) for (const item of node.items) pending.push(item);
  }
  return null;
}

/** The property a scalar key's value becomes in the parsed object; null for a merge key. */
function propertyName(value: unknown): string | null {
  if (value === null) return '';
  if (typeof value === 'symbol') return null; // `<<` where merge keys apply (YAML 1.1)
  return String(value);
}

/**
 * The value of a one-document YAML text (aliases bounded as elsewhere); throws the first error,
 * a repeated key included, as the yaml library's parse() would.
 */
export function parseYaml(text: string): unknown {
  const document = parseDocument(text, YAML_OPTIONS);
  const problem = firstProblem(document);
  if (problem !== null) throw new Error(problem.message);
  return document.toJS({ maxAliasCount: 100 });
}

/** A parsed document's first problem: the library's first error, else a repeated key (null: none). */
function firstProblem(document: Document.Parsed): { offset: number; message: string } | null {
  const error = document.errors[0];
  if (error !== undefined) return { offset: error.pos[0], message: error.message.split('\n')[0]! };
  const repeated = repeatedKeyOffset(document.contents);
  return repeated === null ? null : { offset: repeated, message: REPEATED_KEY };
}

type Pairs = ReadonlyMap<string, Pair<unknown, unknown>>;
const pairIndexes = new WeakMap<YAMLMap, Pairs>();

/**
 * A mapping's pairs by key (the first of equal keys), built once per mapping: a file with an error
 * for each of its 20,000 annotations looked each up from the start, and took 28 s to report them.
 */
function pairsOf(map: YAMLMap): Pairs {
  let pairs = pairIndexes.get(map);
  if (pairs === undefined) {
    const index = new Map<string, Pair<unknown, unknown>>();
    for (const p of map.items)
      if (isPair(p) && isScalar(p.key) && !index.has(String(p.key.value))) index.set(String(p.key.value), p);
    pairIndexes.set(map, (pairs = index));
  }
  return pairs;
}

/** One YAML document with positions: its value, and `at(path)` = "SOURCE:LINE:COLUMN". */
export interface YamlSource {
  readonly value: unknown;
  at(path: FieldPath, atKey?: boolean): string;
}

/**
 * Parses the single YAML document of `text` (named `source` in positions). Throws an Error whose
 * message starts with "SOURCE:LINE:COLUMN: " when the text is not valid YAML.
 */
export function parseYamlSource(text: string, source: string): YamlSource {
  const lines = new LineCounter();
  const document = parseDocument(text, { ...YAML_OPTIONS, lineCounter: lines });
  const position = (offset: number): string => {
    const { line, col } = lines.linePos(offset);
    return `${source}:${line}:${col}`;
  };
  const problem = firstProblem(document);
  if (problem !== null) throw new Error(`${position(problem.offset)}: not valid YAML (${problem.message})`);
  let value: unknown;
  try {
    value = document.toJS({ maxAliasCount: 100 });
  } catch (e) {
    throw new Error(
      `${position(document.range[0])}: not valid YAML (${(e as Error).message.split('\n')[0]})`,
    );
  }
  return { value, at: (path, atKey) => position(offsetOfPath(document, path, atKey)) };
}
