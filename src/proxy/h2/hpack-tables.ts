// The HPACK static table (RFC 7541 Appendix A) and the lookups the encoder and decoder need from
// it. It is kept apart from hpack.ts because it is pure data: 61 fixed (name, value) pairs that
// both ends of every HTTP/2 connection know, indexed from 1.

/** [name, value] for static indexes 1..61, in order (index = position + 1). */
const ENTRIES: readonly (readonly [string, string])[] = [
  [':authority', ''],
  [':method', 'GET'],
  [':method', 'POST'],
  [':path', '/'],
  [':path', '/index.html'],
  [':scheme', 'http'],
  [':scheme', 'https'],
  [':status', '200'],
  [':status', '204'],
  [':status', '206'],
  [':status', '304'],
  [':status', '400'],
  [':status', '404'],
  [':status', '500'],
  ['accept-charset', ''],
  ['accept-encoding', 'gzip, deflate'],
  ['accept-language', ''],
  ['accept-ranges', ''],
  ['accept', ''],
  ['access-control-allow-origin', ''],
  ['age', ''],
  ['allow', ''],
  ['authorization', ''],
  ['cache-control', ''],
  ['content-disposition', ''],
  ['content-encoding', ''],
  ['content-language', ''],
  ['content-length', ''],
  ['content-location', ''],
  ['content-range', ''],
  ['content-type', ''],
  ['cookie', ''],
  ['date', ''],
  ['etag', ''],
  ['expect', ''],
  ['expires', ''],
  ['from', ''],
  ['host', ''],
  ['if-match', ''],
  ['if-modified-since', ''],
  ['if-none-match', ''],
  ['if-range', ''],
  ['if-unmodified-since', ''],
  ['last-modified', ''],
  ['link', ''],
  ['location', ''],
  ['max-forwards', ''],
  ['proxy-authenticate', ''],
  ['proxy-authorization', ''],
  ['range', ''],
  ['referer', ''],
  ['refresh', ''],
  ['retry-after', ''],
  ['server', ''],
  ['set-cookie', ''],
  ['strict-transport-security', ''],
  ['transfer-encoding', ''],
  ['user-agent', ''],
  ['vary', ''],
  ['via', ''],
  ['www-authenticate', ''],
];

/** The number of static entries; dynamic indexes start right after (62). */
export const STATIC_TABLE_LENGTH = ENTRIES.length;

// The decoder reads names and values by index on every indexed field: two flat arrays with a
// placeholder at 0 make that one array load each (index 0 is rejected before it gets here).
export const STATIC_NAMES: readonly string[] = ['', ...ENTRIES.map((e) => e[0])];
export const STATIC_VALUES: readonly string[] = ['', ...ENTRIES.map((e) => e[1])];

/** What the encoder needs to know about a name that appears in the static table. */
export interface StaticName {
  /** The lowest index carrying this name (for "literal with indexed name"). */
  readonly nameIndex: number;
  /** Index of each (name, value) pair in the table, by value (for "indexed field"). */
  readonly byValue: ReadonlyMap<string, number>;
}

/**
 * Static-table lookups by name, then by value: two Map gets per field, and no key string built by
 * concatenating name and value on the encoder's hot path.
 */
export const STATIC_BY_NAME: ReadonlyMap<string, StaticName> = (() => {
  const byName = new Map<string, { nameIndex: number; byValue: Map<string, number> }>();
  ENTRIES.forEach(([name, value], i) => {
    let entry = byName.get(name);
    if (entry === undefined) {
      entry = { nameIndex: i + 1, byValue: new Map() };
      byName.set(name, entry);
    }
    if (!entry.byValue.has(value)) entry.byValue.set(value, i + 1);
  });
  return byName;
})();
