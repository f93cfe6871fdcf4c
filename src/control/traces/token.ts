// The trace token: what a proxy shows the embedded trace collector (component.ts) to add spans,
// over OTLP/HTTP (`authorization: Bearer TOKEN`) or OTLP/gRPC (the same call metadata). Without
// it anyone who reaches the control plane's APIs could fill `trellis trace` with made-up traces
// and push the real ones out of the bounded store.
//
//   `trellis up` creates `<state>/trace-token` (0600, 32 random bytes) on its first start and keeps
//   it across restarts (proxies already running keep exporting); control.json names the file, and
//   `trellis run` gives it to each proxy it starts (`--trace-token-file`). Whoever can read the
//   state folder can add spans, as whoever can write its files can already register workloads.
//
// It grants nothing else: the operator token (src/control/operator-token.ts) stays the only key to
// changing state, and a proxy never holds that one.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { TrellisError } from '../../core/errors.ts';
import { createTokenFileOnce } from '../operator-token.ts';

export const TRACE_TOKEN_FILE = 'trace-token';

export function traceTokenPath(root: string): string {
  return join(root, TRACE_TOKEN_FILE);
}

/** The trace token of the state folder `root`, created on first use (see above). */
export async function loadOrCreateTraceToken(
  root: string,
  onLoosened: (path: string) => void,
): Promise<string> {
  const path = traceTokenPath(root);
  await createTokenFileOnce(path, onLoosened);
  const token = (await readFile(path, 'utf8')).trim();
  if (!/^[\x21-\x7e]{32,1024}$/.test(token))
    throw new TrellisError(
      'TRELLIS_ERR_TRACE_TOKEN',
      `${path}: not a trace token (remove it: it is made again)`,
    );
  return token;
}
