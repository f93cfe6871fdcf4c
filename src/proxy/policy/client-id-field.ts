// The client-identity header (`trellis-client-id`, mesh.clientIdHeader) is the proxy's alone to
// set, so every field an app could read as it is removed from what a client sent, on every inbound
// path. An app reads it under more spellings than one: field names are case-insensitive, and a
// server that hands fields to the app as environment variables (CGI, PHP, WSGI: Python's
// wsgiref, CGIHTTPRequestHandler, and others) turns '-' into '_', so `trellis_client_id` is
// HTTP_TRELLIS_CLIENT_ID too, alone or merged with the real one. Hence one test for every path.

/** A field name byte as such a server reads it: upper case to lower, '_' to '-'. */
function folded(c: number): number {
  if (c >= 0x41 && c <= 0x5a) return c + 0x20;
  return c === 0x5f ? 0x2d : c;
}

/**
 * Whether an app may read the field `name` as the lower-case field `lowerName`: the same in any
 * case, with '_' for any '-' (or the other way round).
 */
export function readsAs(name: string, lowerName: string): boolean {
  if (name.length !== lowerName.length) return false;
  for (let i = 0; i < name.length; i++) {
    if (folded(name.charCodeAt(i)) !== folded(lowerName.charCodeAt(i))) return false;
  }
  return true;
}

/** Whether the field `name` is the client-identity header `idHeader` as an app may read it. */
export function isClientIdField(name: string, idHeader: string): boolean {
  return readsAs(name, idHeader);
}

/** Removes every field of an HTTP/2 header (or trailer) object that is the client-identity header. */
export function deleteClientIdFields(headers: Record<string, unknown>, idHeader: string): void {
  for (const name of Object.keys(headers)) if (isClientIdField(name, idHeader)) delete headers[name];
}
