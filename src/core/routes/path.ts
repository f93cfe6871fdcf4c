// HTTPRoute paths: the element-wise PathPrefix match ("/v2" matches "/v2", "/v2/" and "/v2/x",
// never "/v2example"; a trailing "/" of the prefix is ignored) and ReplacePrefixMatch, which
// replaces the matched prefix by the same element-wise rule, with the spec's table of slashes
// (apis/v1/httproute_types.go, HTTPPathModifier). Pure; property-tested in
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
  return result === '' ? '/' : result;
}
