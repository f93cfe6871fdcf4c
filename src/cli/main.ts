#!/usr/bin/env node
// The `trellis` command: one binary, one file per subcommand under src/cli/. Each subcommand
// module exports `run(argv): Promise<number>` and a one-line `summary`.

interface Subcommand {
  summary: string;
  run(argv: string[]): Promise<number>;
}

const commands: Record<string, () => Promise<Subcommand>> = {
  proxy: () => import('./proxy.ts'),
  init: () => import('./init.ts'),
  demo: () => import('./demo.ts'),
  up: () => import('./up.ts'),
  control: () => import('./control.ts'),
  apply: () => import('./apply.ts'),
  run: () => import('./run.ts'),
  stat: () => import('./stat.ts'),
  identity: () => import('./identity.ts'),
  authz: () => import('./authz.ts'),
  check: () => import('./check.ts'),
};

async function usage(): Promise<string> {
  const lines = ['Usage: trellis <command> [options]', '', 'Commands:'];
  for (const [name, load] of Object.entries(commands)) {
    const mod = await load();
    lines.push(`  ${name.padEnd(10)} ${mod.summary}`);
  }
  lines.push('', 'Run `trellis <command> --help` for the options of a command.');
  return lines.join('\n');
}

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write((await usage()) + '\n');
    return name === undefined ? 2 : 0;
  }
  const load = commands[name];
  if (!load) {
    process.stderr.write(`trellis: unknown command '${name}'\n\n${await usage()}\n`);
    return 2;
  }
  return (await load()).run(rest);
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    const e = err as { code?: string; message?: string };
    process.stderr.write(`trellis: ${e.message ?? String(err)}\n`);
    process.exitCode = e.code === 'TRELLIS_ERR_CONFIG' ? 2 : 1;
  },
);
