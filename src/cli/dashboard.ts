// `trellis dashboard`: the web dashboard of a running mesh. The control plane serves the page
// itself (GET /dashboard of its HTTP API, src/control/dashboard/), as long as it runs; this
// command finds that control plane (--state or --control, as `trellis stat` does), checks that it
// serves the page, serves it on a loopback port through a relay that adds the operator token to
// the page's reads of live requests (dashboard-relay.ts; --direct: the control plane's own URL,
// without one), prints the page's URL on stdout, optionally opens a browser (--open, with
// xdg-open), and keeps running until Ctrl-C or SIGTERM, so that scripts can hold it like
// `linkerd viz dashboard`. It ends with a non-zero exit when the control plane goes away.
import { spawn } from 'node:child_process';
import { ConfigError, TrellisError } from '../core/errors.ts';
import { LogThrottle } from '../core/log-rate-limit.ts';
import { callControl, findControlPlane } from './control-api.ts';
import { startDashboardRelay, type DashboardRelay } from './dashboard-relay.ts';
import { type FlagSpec, formatHelp, parseInterleaved } from './flags.ts';
import { CONTROL_FLAG, OPERATOR_TOKEN_FLAG, STATE_FLAG, stateFolder } from './targeting.ts';
import { SUMMARIES } from './summaries.ts';

export const summary = SUMMARIES.dashboard;

/** How often the command checks that the control plane still serves the page. */
const CHECK_INTERVAL_MS = 5000;

const FLAGS: FlagSpec[] = [
  { name: 'open', kind: 'boolean', help: 'also open the page in a browser (xdg-open)' },
  { name: 'port', kind: 'string', help: 'the loopback port of the page (default 0: any free port)' },
  {
    name: 'direct',
    kind: 'boolean',
    help: "print the control plane's own URL of the page instead of serving it (no live tap or traces where they need the operator token); it still runs until Ctrl-C, and exits 1 if the control plane stops serving the page",
  },
  STATE_FLAG,
  CONTROL_FLAG,
  OPERATOR_TOKEN_FLAG,
];

const USAGE = `Usage: trellis dashboard [options]

Prints the URL of the web dashboard and keeps serving it until stopped (Ctrl-C). The control plane
(\`trellis up\`, \`trellis demo\`, \`trellis control\`) serves the page at /dashboard of its HTTP
API, like its other read APIs; this command serves it at http://127.0.0.1:PORT/dashboard and
relays the page and its API reads (GET and HEAD only) to the control plane, adding the operator
token (the state folder's, or --operator-token-file with --control) to the reads of live requests
(the tap, recent traces) that a control plane reachable from other hosts refuses without it. The
relay answers only on loopback, only to its own Host name (127.0.0.1:PORT, localhost:PORT), and
only to the browser that opened the printed URL (its key=... is traded for a cookie).
The page shows the namespaces, the workloads with live golden metrics, a topology of who calls
whom (mTLS or not; the callee's success rate and p50 latency on each arrow), a page per workload
with its callers and callees and a live tap of its requests, and with each view the CLI command
that shows the same. It needs nothing from the internet.`;

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
    tokenFile: values.get('operator-token-file') as string | undefined,
  });
  await checkServed(api.base);
  let relay: DashboardRelay | null = null;
  if (values.get('direct') !== true) {
    const throttle = new LogThrottle();
    relay = await startDashboardRelay({
      api,
      port: portOf(values.get('port') as string | undefined),
      onRefusal: (_reason, detail) =>
        throttle.note((skipped) =>
          process.stderr.write(
            `trellis dashboard: refused a request: ${detail}${skipped > 0 ? ` (${skipped} more refusals not shown)` : ''}\n`,
          ),
        ),
    });
  }
  const url = relay?.url ?? `${api.base}/dashboard`;
  process.stdout.write(url + '\n');
  if (values.get('open') === true) openBrowser(url);
  process.stderr.write(
    relay === null
      ? 'trellis dashboard: served by the control plane; Ctrl-C to stop\n'
      : `trellis dashboard: relaying to the control plane at ${api.base}; Ctrl-C to stop\n`,
  );
  const code = await new Promise<number>((resolve) => {
    const timer = setInterval(() => {
      checkServed(api.base).catch((error: Error) => {
        process.stderr.write(`trellis dashboard: ${error.message}\n`);
        stop(1);
      });
    }, CHECK_INTERVAL_MS);
    const stop = (exit: number): void => {
      clearInterval(timer);
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
      resolve(exit);
    };
    const onSignal = (): void => stop(0);
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
  });
  await relay?.close();
  return code;
}

/** --port: a port number, 0 (any free port) when not given. */
function portOf(flag: string | undefined): number {
  if (flag === undefined) return 0;
  const port = Number(flag);
  if (!/^\d{1,5}$/.test(flag) || port > 65535)
    throw new ConfigError('--port', `expected a port number, got '${flag}'`);
  return port;
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
