// HTTPRoute paths: the element-wise PathPrefix match ("/v2" matches "/v2", "/v2/" and "/v2/x",
// never "/v2example"; a trailing "/" of the prefix is ignored) and ReplacePrefixMatch, which
// replaces the matched prefix by the same element-wise rule, with the spec's table of slashes
// (apis/v1/httproute_types.go, HTTPPathModifier); a result never starts with "//" (a
// network-path reference). Pure; property-tested in
// test/unit/routes-path.test.ts.

/** The prefix without its trailing "/" ("" for "/"), the form both functions below use. */
export function normalizePrefix(prefix: string): string {
  return prefix.endsWith('/') ? prefix.slice(0, -1) : prefix;
}

/** True when `path` is under the (normalized) `prefix`, element by element. */
export function underPrefix(path: string, normalizedPrefix: string): boolean {
  if (normalizedPrefix === '') return path.startsWith('/');
  if (!path.startsWith(normalizedPrefix)) return false;
  return path.length === normalizedPrefix.length || path.charCodeAt(normalizedPrefix.length) === 0x2f;
}

/**
 * `path` with its `prefix` (the PathPrefix value it matched) replaced by `replacement`:
 * /foo/bar with /foo -> /xyz gives /xyz/bar; /foo with /foo -> "" gives "/".
 */
export function replacePrefix(path: string, prefix: string, replacement: string): string {
  const normalized = normalizePrefix(prefix);
  const rest = underPrefix(path, normalized) ? path.slice(normalized.length) : path;
  const result = normalizePrefix(replacement) + rest;
  return result === '' ? '/' : singleLeadingSlash(result);
}

/** A second "/" (or "%2F", "%5C") right after the first: what makes "//host/x" a network-path reference. */
const EXTRA_LEADING = /^\/(?:\/|%2f|%5c)+/i;

/**
 * `path` starting with exactly one "/": "/foo//evil.com" rewritten from "/foo" to "/" would
 * otherwise send "//evil.com", which an app resolving it as a URL reference (WHATWG URL, a
 * redirect to its own path) reads as the host evil.com. Empty segments further on are kept.
 */
function singleLeadingSlash(path: string): string {
  return path.length > 1 && EXTRA_LEADING.test(path) ? path.replace(EXTRA_LEADING, '/') : path;
}
