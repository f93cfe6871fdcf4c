// The CLI's client of a running control plane's HTTP API (src/control/server.ts). Which one:
// `--control URL`, or the control.json that `trellis up` writes into its state folder (--state,
// $TRELLIS_STATE, .trellis). State-changing requests (and reads of live requests: tap, traces) carry the operator token as
// `Authorization: Bearer`: the state folder's `operator-token`, or for a control plane given with
// --control the file of --operator-token-file (never the state folder's token: it belongs to
// that folder's control plane, not to whatever listens at the URL).
import { ConfigError, TrellisError } from '../core/errors.ts';
import { runningControlFile } from '../api/control-file.ts';
import { operatorTokenPath, readOperatorToken } from '../control/operator-token.ts';
import { isSensitiveRead } from '../control/operator-auth.ts';

const TIMEOUT_MS = 5000;

export interface ControlApi {
  /** "http://HOST:PORT". */
  readonly base: string;
  /** The operator token's file, or null: state-changing requests go without a token. */
  readonly tokenFile: string | null;
}

export interface ControlChoice {
  /** --control */
  readonly control?: string | undefined;
  /** --state, as given */
  readonly stateFlag?: string | undefined;
  /** The state folder (--state, $TRELLIS_STATE or the default). */
  readonly root: string;
  /** --operator-token-file */
  readonly tokenFile?: string | undefined;
}

/** The control plane to talk to; a ConfigError or TRELLIS_ERR_NO_CONTROL_PLANE when there is none. */
export async function findControlPlane(choice: ControlChoice): Promise<ControlApi> {
  const { control, stateFlag, root, tokenFile } = choice;
  if (control !== undefined) {
    if (stateFlag !== undefined) throw new ConfigError('--control', 'give --control or --state, not both');
    if (!/^https?:\/\/[^/\s]+\/?$/.test(control) || !URL.canParse(control)) {
      throw new ConfigError('--control', `expected an http:// URL, got '${control}'`);
    }
    return { base: control.replace(/\/$/, ''), tokenFile: tokenFile ?? null };
  }
  const info = await runningControlFile(root);
  if (info === null) {
    throw new TrellisError(
      'TRELLIS_ERR_NO_CONTROL_PLANE',
      `no control plane runs over the state folder ${root} (start \`trellis up\`, or give --state DIR or --control URL)`,
    );
  }
  return { base: `http://${info.http}`, tokenFile: tokenFile ?? operatorTokenPath(root) };
}

export interface ApiAnswer {
  readonly status: number;
  /** The JSON body ({error} for a body that is not JSON). */
  readonly body: unknown;
}

/**
 * The headers of a request: any method but GET and HEAD carries the operator token; so do the
 * reads that show live requests (isSensitiveRead: /api/tap, /api/traces), which a control plane
 * reachable from other hosts refuses without it, when the token's file can be read.
 */
export async function requestHeaders(
  api: ControlApi,
  method: string,
  path: string,
): Promise<Record<string, string>> {
  if (api.tokenFile === null) return {};
  if (method !== 'GET' && method !== 'HEAD') {
    return { authorization: `Bearer ${await readOperatorToken(api.tokenFile)}` };
  }
  if (!isSensitiveRead(path.split('?')[0]!)) return {};
  const token = await readOperatorToken(api.tokenFile).catch(() => null);
  return token === null ? {} : { authorization: `Bearer ${token}` };
}

const FETCH_CAUSES: Record<string, string> = {
  ECONNREFUSED: 'connection refused',
  ECONNRESET: 'connection reset',
  EHOSTUNREACH: 'host unreachable',
  ENETUNREACH: 'network unreachable',
  ENOTFOUND: 'no such host',
  EAI_AGAIN: 'name lookup failed',
  ETIMEDOUT: 'connect timed out',
};

/**
 * Why a fetch of the control plane failed, in words: undici says only "fetch failed" and keeps
 * the reason in `cause` (ECONNREFUSED: nothing listens there); a timeout says how long it waited.
 */
export function fetchFailure(error: unknown): string {
  const e = error as { name?: string; message?: string; cause?: { code?: string; message?: string } };
  if (e.name === 'TimeoutError') return `no answer within ${TIMEOUT_MS / 1000} s`;
  const code = e.cause?.code;
  if (code !== undefined) return `${FETCH_CAUSES[code] ?? e.cause?.message ?? 'failed'} (${code})`;
  return e.cause?.message ?? e.message ?? String(error);
}

/** One request, with requestHeaders. TRELLIS_ERR_CONTROL_PLANE when unreachable. */
export async function callControl(api: ControlApi, method: string, path: string): Promise<ApiAnswer> {
  const headers = await requestHeaders(api, method, path);
  let text: string;
  let status: number;
  try {
    const res = await fetch(`${api.base}${path}`, {
      method,
      headers,
      signal: AbortSignal.timeout(TIMEOUT_MS),
    });
    status = res.status;
    text = await res.text();
  } catch (error) {
    throw new TrellisError(
      'TRELLIS_ERR_CONTROL_PLANE',
      `cannot reach the control plane at ${api.base}: ${fetchFailure(error)}`,
    );
  }
  try {
    return { status, body: JSON.parse(text) };
  } catch {
    return { status, body: { error: text.trim() } };
  }
}

/** GET `path`: the JSON body of a 200, else TRELLIS_ERR_CONTROL_PLANE saying what `what` could not get. */
export async function getControl<T>(api: ControlApi, path: string, what: string): Promise<T> {
  const { status, body } = await callControl(api, 'GET', path);
  if (status !== 200) {
    throw new TrellisError(
      'TRELLIS_ERR_CONTROL_PLANE',
      `cannot get ${what} from ${api.base}: ${errorOf(status, body)}`,
    );
  }
  return body as T;
}

/** "HTTP 401: ..." from a refusal's JSON body. */
export function errorOf(status: number, body: unknown): string {
  const b = body as { error?: unknown; authenticate?: unknown } | null;
  const error = typeof b?.error === 'string' ? b.error : '';
  const how = typeof b?.authenticate === 'string' ? `; ${b.authenticate}` : '';
  return `HTTP ${status}${error === '' ? '' : `: ${error}`}${how}`;
}
