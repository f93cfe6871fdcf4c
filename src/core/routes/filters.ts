// Route filters as pure functions over a request or response head, for the proxy to apply to
// the rule a request matched (matcher.ts): header modifiers (set / add / remove, names compared
// case-insensitively; set replaces every value, add appends one more line), the RequestRedirect's
// status and Location, and URLRewrite's path and host. Headers are node's flat raw list
// [name, value, name, value, ...] (IncomingMessage.rawHeaders, and what writeHead accepts), so a
// modifier keeps the order and case of every header it does not touch. Pure; property-tested in
// test/unit/routes-filters.test.ts.
import { replacePrefix } from './path.ts';
import type { HeaderModifier, PathModifier, Redirect } from './schema-filters.ts';

/** `raw` with `modifier` applied: removes first, then sets (replacing any value), then adds. */
export function modifyHeaders(modifier: HeaderModifier, raw: readonly string[]): string[] {
  const dropped = new Set<string>();
  for (const name of modifier.remove) dropped.add(name.toLowerCase());
  for (const header of modifier.set) dropped.add(header.name.toLowerCase());
  const out: string[] = [];
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = raw[i] as string;
    if (!dropped.has(name.toLowerCase())) out.push(name, raw[i + 1] as string);
  }
  for (const header of modifier.set) out.push(header.name, header.value);
  for (const header of modifier.add) out.push(header.name, header.value);
  return out;
}

/** The path a path modifier gives `path` (`matchedPrefix`: the PathPrefix value the request matched). */
export function modifyPath(modifier: PathModifier, path: string, matchedPrefix: string | null): string {
  if (modifier.type === 'ReplaceFullPath') return modifier.replaceFullPath ?? path;
  return replacePrefix(path, matchedPrefix ?? '/', modifier.replacePrefixMatch ?? '');
}

/** What a redirect needs to know of the request. */
export interface RedirectRequest {
  /** "http" inside the mesh (the app speaks plain HTTP to its proxy). */
  readonly scheme: 'http' | 'https';
  /** The request's host, without a port (the Host header's or :authority's host part). */
  readonly host: string;
  /** The port the client addressed (the Service port): the redirect's port when neither port nor scheme is given. */
  readonly port: number;
  readonly path: string;
  /** The query without "?", "" when none; kept in the Location. */
  readonly query: string;
}

export interface RedirectResponse {
  readonly status: 301 | 302 | 303 | 307 | 308;
  readonly location: string;
}

/**
 * The redirect's status and Location. The port: the filter's, else the well-known port of the
 * filter's scheme (80, 443), else the port the client addressed; left out of the Location when it
 * is the scheme's well-known port.
 */
export function redirectResponse(
  redirect: Redirect,
  request: RedirectRequest,
  matchedPrefix: string | null,
): RedirectResponse {
  const scheme = redirect.scheme ?? request.scheme;
  const host = redirect.hostname ?? request.host;
  const port =
    redirect.port ?? (redirect.scheme !== undefined ? (scheme === 'https' ? 443 : 80) : request.port);
  const defaultPort = scheme === 'https' ? 443 : 80;
  const path =
    redirect.path === undefined ? request.path : modifyPath(redirect.path, request.path, matchedPrefix);
  const hostPart = host.includes(':') && !host.startsWith('[') ? `[${host}]` : host;
  const location =
    `${scheme}://${hostPart}${port === defaultPort ? '' : `:${port}`}${path}` +
    (request.query === '' ? '' : `?${request.query}`);
  return { status: redirect.statusCode, location };
}

/** Splits a Host header value into host and port ("[::1]:8080" -> ["::1", 8080]); port null when absent or invalid. */
export function splitHost(value: string): { host: string; port: number | null } {
  const bracket = value.startsWith('[') ? value.indexOf(']') : -1;
  const colon = value.lastIndexOf(':');
  if (bracket !== -1) {
    const host = value.slice(1, bracket);
    const rest = value.slice(bracket + 1);
    return { host, port: rest.startsWith(':') ? parsePort(rest.slice(1)) : null };
  }
  if (colon === -1 || value.indexOf(':') !== colon) return { host: value, port: null };
  return { host: value.slice(0, colon), port: parsePort(value.slice(colon + 1)) };
}

function parsePort(text: string): number | null {
  if (!/^[0-9]{1,5}$/.test(text)) return null;
  const port = Number(text);
  return port >= 1 && port <= 65535 ? port : null;
}
