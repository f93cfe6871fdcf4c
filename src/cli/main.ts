#!/usr/bin/env node
// The `trellis` command: one binary, one file per subcommand under src/cli/. Each subcommand
// module exports `run(argv): Promise<number>` and a one-line `summary`. `trellis help CMD` is
// `trellis CMD --help`; `trellis version` (or --version) prints the version of package.json.
import { SUMMARIES, type CommandName } from './summaries.ts';
import { packageVersion } from './version.ts';

interface Subcommand {
  summary: string;
  run(argv: string[]): Promise<number>;
}

const commands: Record<CommandName, () => Promise<Subcommand>> = {
  proxy: () => import('./proxy.ts'),
  init: () => import('./init.ts'),
  demo: () => import('./demo.ts'),
  up: () => import('./up.ts'),
  control: () => import('./control.ts'),
  apply: () => import('./apply.ts'),
  run: () => import('./run.ts'),
  stat: () => import('./stat.ts'),
  'prometheus-config': () => import('./prometheus-config.ts'),
  edges: () => import('./edges.ts'),
  tap: () => import('./tap.ts'),
  top: () => import('./top.ts'),
  trace: () => import('./trace.ts'),
  dashboard: () => import('./dashboard.ts'),
  identity: () => import('./identity.ts'),
  authz: () => import('./authz.ts'),
  routes: () => import('./routes.ts'),
  get: () => import('./get.ts'),
  check: () => import('./check.ts'),
  install: () => import('./install.ts'),
  uninstall: () => import('./uninstall.ts'),
  upgrade: () => import('./upgrade.ts'),
  inject: () => import('./inject.ts'),
  uninject: () => import('./uninject.ts'),
};

async function usage(): Promise<string> {
  const lines = ['Usage: trellis <command> [options]', '', 'Commands:'];
  // The summaries line up behind the longest command name.
  const width = Math.max(...Object.keys(commands).map((name) => name.length));
  // The summaries of their own module: listing the commands loads none of them.
  for (const name of Object.keys(commands) as CommandName[])
    lines.push(`  ${name.padEnd(width)} ${SUMMARIES[name]}`);
  lines.push(`  ${'version'.padEnd(width)} the version of trellis (also --version)`);
  lines.push(`  ${'help'.padEnd(width)} this list, or the options of a command (trellis help CMD)`);
  lines.push(
    '',
    'Run `trellis help <command>` (or `trellis <command> --help`) for the options of a command.',
  );
  return lines.join('\n');
}

/** "trellis 0.1.0 (node v24.x)": the package's version, read beside src/ or dist/. */
function versionLine(): string {
  return `trellis ${packageVersion()} (node ${process.version})`;
}

async function main(argv: string[]): Promise<number> {
  const [first, ...afterFirst] = argv;
  // `trellis help CMD ...` is `trellis CMD --help`.
  const helpFor = first === 'help' && afterFirst.length > 0 ? afterFirst[0] : undefined;
  const [name, ...rest] = helpFor === undefined ? argv : [helpFor, '--help'];
  if (name === 'version' || name === '--version') {
    if (rest.length === 1 && (rest[0] === '--help' || rest[0] === '-h')) {
      process.stdout.write(
        'Usage: trellis version\n\nPrints the version of trellis and of the Node it runs on.\n',
      );
      return 0;
    }
    if (rest.length > 0) {
      process.stderr.write(`trellis version: unexpected argument '${rest[0]}'\n`);
      return 2;
    }
    process.stdout.write(versionLine() + '\n');
    return 0;
  }
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write((await usage()) + '\n');
    return name === undefined ? 2 : 0;
  }
  const load = Object.hasOwn(commands, name) ? commands[name as CommandName] : undefined;
  if (load === undefined) {
    process.stderr.write(`trellis: unknown command '${name}'\n\n${await usage()}\n`);
    return 2;
  }
  return (await load()).run(rest);
}

// Commands whose stdout is their answer end quietly when its reader has gone (`trellis tap -o json
// | head -1`: EPIPE), as Unix tools do. The long-running ones (demo, up, run, proxy, ...) decide
// for themselves: `trellis demo` cleans up first.
const QUIET_ON_CLOSED_STDOUT = new Set(
  'stat edges tap top trace routes get authz identity check prometheus-config install uninstall upgrade inject uninject apply help version --version'.split(
    ' ',
  ),
);
if (QUIET_ON_CLOSED_STDOUT.has(process.argv[2] ?? 'help') || process.argv.includes('--help')) {
  process.stdout.on('error', (error: NodeJS.ErrnoException) => {
    if (error.code !== 'EPIPE') throw error;
    process.exit(0);
  });
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    const e = err as { code?: string; message?: string };
    const message = e.message ?? String(err);
    // A message that names its command already ("trellis trace: ...") is not prefixed again.
    process.stderr.write(`${/^trellis [a-z-]+: /.test(message) ? '' : 'trellis: '}${message}\n`);
    process.exitCode = e.code === 'TRELLIS_ERR_CONFIG' ? 2 : 1;
  },
);
