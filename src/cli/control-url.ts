// Finding a running control plane's HTTP API from the CLI: `--control URL`, or the control.json
// that `trellis up` writes into its state folder (`--state`, default .trellis).
import { ConfigError, TrellisError } from '../core/errors.ts';
import { readControlFile } from '../control/server.ts';

/** "http://HOST:PORT" of the control plane's HTTP API: --control, or control.json of the state folder. */
export async function controlUrl(control: string | undefined, state: string | undefined): Promise<string> {
  if (control !== undefined) {
    if (state !== undefined) throw new ConfigError('--control', 'give --control or --state, not both');
    if (!/^https?:\/\/[^/\s]+\/?$/.test(control) || !URL.canParse(control)) {
      throw new ConfigError('--control', `expected an http:// URL, got '${control}'`);
    }
    return control.replace(/\/$/, '');
  }
  const root = state ?? '.trellis';
  const info = await readControlFile(root);
  if (info === null) {
    throw new TrellisError(
      'TRELLIS_ERR_NO_CONTROL_PLANE',
      `no control plane runs over ${root} (start \`trellis up\`, or give --control URL)`,
    );
  }
  return `http://${info.http}`;
}
