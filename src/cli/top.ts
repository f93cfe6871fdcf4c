// `trellis top RESOURCE`: the busiest paths through the proxies of a workload, live (Linkerd's
// `viz top`), built on the same stream as `trellis tap` (tap-stream.ts). On a terminal the table
// is redrawn in place every second; when stdout is not a terminal (a pipe, a file, a test) the
// table is printed once, when top stops (--duration, --max-events, Ctrl-C, SIGTERM or the end of
// the tap).
import { ConfigError } from '../core/errors.ts';
import { type FlagSpec, formatHelp, parseInterleaved } from './flags.ts';
import { streamTap, TAP_FLAGS, tapCommandOf } from './tap-stream.ts';
import { TopTable } from './top-table.ts';
import { SUMMARIES } from './summaries.ts';

export const summary = SUMMARIES.top;

const FLAGS: FlagSpec[] = [...TAP_FLAGS, { name: 'rows', kind: 'number', help: 'rows shown (default 20)' }];

const USAGE = `Usage: trellis top RESOURCE [options]

The busiest paths through the proxies of RESOURCE (NAME, deploy/NAME, po/NAME or ns/NAME), from
a live tap: SOURCE, DESTINATION, METHOD, PATH, COUNT, BEST, WORST and LAST latency, SUCCESS_RATE.
On a terminal the table is redrawn every second until Ctrl-C; when stdout is not a terminal the
table is printed once, when top stops (give --duration or --max-events in scripts; SIGTERM, as
from timeout(1), prints it too). The counts are of the requests the tap saw: each proxy sends at
most --max-rps a second.`;

const CLEAR = '\x1b[H\x1b[2J';

export async function run(argv: string[]): Promise<number> {
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(formatHelp(USAGE, FLAGS) + '\n');
    return 0;
  }
  const { values, rest } = parseInterleaved(argv, FLAGS);
  const rows = (values.get('rows') as number | undefined) ?? 20;
  if (!Number.isInteger(rows) || rows < 1 || rows > 1000)
    throw new ConfigError('--rows', 'expected a whole number 1..1000');
  const cmd = await tapCommandOf('top', values, rest);
  const table = new TopTable();
  const tty = process.stdout.isTTY === true;
  const draw = (): void => {
    process.stdout.write((tty ? CLEAR : '') + table.render(rows).join('\n') + '\n');
  };
  const redraw = tty ? setInterval(draw, 1000) : null;
  try {
    await streamTap(cmd, 'top', (e) => table.add(e));
  } finally {
    if (redraw !== null) clearInterval(redraw);
  }
  draw();
  return 0;
}
