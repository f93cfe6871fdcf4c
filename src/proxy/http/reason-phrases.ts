// The reason phrases of the HTTP/1.1 status lines the proxy writes itself: the answers it makes up
// (h1-serialize.ts errorResponse), its admin listener's responses, and the responses it restores
// from HTTP/2 (which has no reason phrase) when they crossed the mesh (mesh/h1-fields.ts). One
// small table rather than node:http's STATUS_CODES: loading node:http costs the proxy ~15 MB.
// Clients ignore the phrase (RFC 9112 4), so an unlisted status gets a generic one.
const PHRASES: Record<number, string> = {
  100: 'Continue',
  101: 'Switching Protocols',
  103: 'Early Hints',
  200: 'OK',
  201: 'Created',
  202: 'Accepted',
  204: 'No Content',
  206: 'Partial Content',
  301: 'Moved Permanently',
  302: 'Found',
  303: 'See Other',
  304: 'Not Modified',
  307: 'Temporary Redirect',
  308: 'Permanent Redirect',
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  405: 'Method Not Allowed',
  408: 'Request Timeout',
  409: 'Conflict',
  410: 'Gone',
  413: 'Content Too Large',
  414: 'URI Too Long',
  415: 'Unsupported Media Type',
  422: 'Unprocessable Content',
  429: 'Too Many Requests',
  431: 'Request Header Fields Too Large',
  500: 'Internal Server Error',
  501: 'Not Implemented',
  502: 'Bad Gateway',
  503: 'Service Unavailable',
  504: 'Gateway Timeout',
  505: 'HTTP Version Not Supported',
  508: 'Loop Detected',
};

/** The reason phrase for `status`: the standard one, else "OK" below 400 and "Error" from 400. */
export function reasonPhrase(status: number): string {
  return PHRASES[status] ?? (status < 400 ? 'OK' : 'Error');
}
