// `trellis dashboard`: the web dashboard of a running mesh. The control plane serves the page
// itself (GET /dashboard of its HTTP API, src/control/dashboard/), as long as it runs; this
// command finds that control plane (--state or --control, as `trellis stat` does), checks that it
// serves the page, prints the page's URL on stdout, optionally opens a browser (--open, with
// xdg-open), and keeps running until Ctrl-C or SIGTERM, so that scripts can hold it like
// `linkerd viz dashboard`. It ends with a non-zero exit when the control plane goes away.
import { spawn } from 'node:child_process';
import { ConfigError, TrellisError } from '../core/errors.ts';
import { callControl, findControlPlane } from './control-api.ts';
import { type FlagSpec, formatHelp, parseInterleaved } from './flags.ts';
import { CONTROL_FLAG, STATE_FLAG, stateFolder } from './targeting.ts';

export const summary = 'print the URL of the web dashboard the control plane serves';

/** How often the command checks that the control plane still serves the page. */
const CHECK_INTERVAL_MS = 5000;

const FLAGS: FlagSpec[] = [
  { name: 'open', kind: 'boolean', help: 'also open the page in a browser (xdg-open)' },
  STATE_FLAG,
  CONTROL_FLAG,
];

const USAGE = `Usage: trellis dashboard [options]

Prints the URL of the web dashboard and keeps running until stopped (Ctrl-C). The control plane
(\`trellis up\`, \`trellis demo\`, \`trellis control\`) serves the page at /dashboard of its HTTP
API for as long as it runs, to anyone who can reach that API, like the other read APIs: this
command only finds it. The page shows the namespaces, the workloads with live golden metrics, a
topology of who calls whom (mTLS or not; the callee's success rate and p50 latency on each
arrow), a page per workload with its callers and callees and a live tap of its requests, and with each view the CLI command that
shows the same. It needs nothing from the internet.`;

export async function run(argv: string[]): Promise<number> {
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(formatHelp(USAGE, FLAGS) + '\n');
    return 0;
  }
  const { values, rest } = parseInterleaved(argv, FLAGS);
  if (rest.length > 0) throw new ConfigError('', `trellis dashboard: unexpected argument '${rest[0]}'`);
  const api = await findControlPlane({
    control: values.get('control') as string | undefined,
    stateFlag: values.get('state') as string | undefined,
    root: stateFolder(values.get('state') as string | undefined),
  });
  const url = `${api.base}/dashboard`;
  await checkServed(api.base);
  process.stdout.write(url + '\n');
  if (values.get('open') === true) openBrowser(url);
  process.stderr.write('trellis dashboard: served by the control plane; Ctrl-C to stop\n');
  return new Promise<number>((resolve) => {
    const timer = setInterval(() => {
      checkServed(api.base).catch((error: Error) => {
        process.stderr.write(`trellis dashboard: ${error.message}\n`);
        stop(1);
      });
    }, CHECK_INTERVAL_MS);
    const stop = (code: number): void => {
      clearInterval(timer);
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
      resolve(code);
    };
    const onSignal = (): void => stop(0);
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
  });
}

/** TRELLIS_ERR_CONTROL_PLANE unless the control plane at `base` serves the dashboard. */
async function checkServed(base: string): Promise<void> {
  const { status } = await callControl({ base, tokenFile: null }, 'HEAD', '/dashboard');
  if (status !== 200)
    throw new TrellisError(
      'TRELLIS_ERR_CONTROL_PLANE',
      `the control plane at ${base} does not serve the dashboard (HEAD /dashboard: HTTP ${status})`,
    );
}

/** xdg-open URL, detached; a missing opener is only a note (the URL is printed anyway). */
function openBrowser(url: string): void {
  const child = spawn('xdg-open', [url], { stdio: 'ignore', detached: true });
  child.on('error', (error) =>
    process.stderr.write(`trellis dashboard: cannot open a browser: ${error.message}\n`),
  );
  child.unref();
}
