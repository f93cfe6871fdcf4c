// `trellis tap RESOURCE`: live requests through the proxies of a workload (Linkerd's `viz tap`),
// as the control plane streams them from each proxy (GET /api/tap, src/control/tap/tap-api.ts):
// one line per finished request with its source, destination, mTLS, method, authority, path,
// status and latency; -o wide adds the identities; -o json prints each event as one JSON object
// per line (scripts read `path`). Metadata only, never bodies; rate-capped per proxy.
import { type FlagSpec, formatHelp, parseInterleaved } from './flags.ts';
import { exchangeText } from './tap-lines.ts';
import { streamTap, TAP_FLAGS, tapCommandOf } from './tap-stream.ts';
import { outputFlag, outputOf } from './targeting.ts';
import { SUMMARIES } from './summaries.ts';

export const summary = SUMMARIES.tap;

const OUTPUTS = ['table', 'wide', 'json'] as const;
const FLAGS: FlagSpec[] = [...TAP_FLAGS, outputFlag(OUTPUTS)];

const USAGE = `Usage: trellis tap RESOURCE [options]

Live requests through the proxies of RESOURCE: a workload (NAME, deploy/NAME), one instance
(po/NAME) or a namespace (ns/NAME), inbound and outbound, one line per finished request:

  out src=127.0.0.1:50412 dst=127.0.0.1:4143 tls=true :method=GET :authority=web:8080 :path=/
      :status=200 latency=1.2ms rsp-bytes=12

-o wide adds the client and server identities, the request bytes, the protocol, the proxy and
the route that forwarded the request (route=NAMESPACE/NAME route-rule=RULE);
-o json prints one JSON object per request (path, method, status, latency_ms, source_identity,
destination_identity, tls, ...). Only metadata is shown, never bodies or other headers. Each
proxy sends at most --max-rps requests a second and counts what it leaves out (said on stderr).
A RESOURCE with no proxy, and a proxy that cannot be tapped, are said at once. Runs until Ctrl-C,
--max-events or --duration.`;

export async function run(argv: string[]): Promise<number> {
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(formatHelp(USAGE, FLAGS) + '\n');
    return 0;
  }
  const { values, rest } = parseInterleaved(argv, FLAGS);
  const output = outputOf(values, OUTPUTS);
  const cmd = await tapCommandOf('tap', values, rest);
  await streamTap(cmd, 'tap', (e) => {
    process.stdout.write((output === 'json' ? JSON.stringify(e) : exchangeText(e, output === 'wide')) + '\n');
  });
  return 0;
}
