// A small command-line flag parser shared by the subcommands: `--name value`, `--name=value`,
// boolean `--flag`, short forms a spec declares (`-n value`, `-n=value`), and `--` ending the
// options. Unknown flags, long or short, are errors that name the flag; a lone `-` is an argument
// (standard input, for `trellis apply -f -`).
import { ConfigError } from '../core/errors.ts';

export interface FlagSpec {
  /** kebab-case name without the dashes */
  readonly name: string;
  /** number: a whole number; decimal: any decimal number (a ratio, say), its range checked by the command */
  readonly kind: 'string' | 'number' | 'decimal' | 'boolean' | 'list';
  readonly help: string;
  /** One letter: `-x` is the same flag (kubectl's -n, -o, -f). */
  readonly short?: string;
  /** where the value goes in the configuration object (dotted), for commands configured by a schema */
  readonly path?: string;
  readonly repeatable?: boolean;
}

export interface ParsedFlags {
  values: Map<string, unknown>;
  rest: string[];
  /** Whether `--` ended the options (everything in `rest` is then an argument). */
  ended: boolean;
}

export function parseFlags(argv: readonly string[], specs: readonly FlagSpec[]): ParsedFlags {
  const byName = new Map(specs.map((s) => [s.name, s]));
  const byShort = new Map(specs.filter((s) => s.short !== undefined).map((s) => [s.short!, s]));
  const values = new Map<string, unknown>();
  let ended = false;
  let i = 0;
  for (; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--') {
      ended = true;
      i++;
      break;
    }
    if (!arg.startsWith('-') || arg === '-') break;
    const long = arg.startsWith('--');
    const eq = arg.indexOf('=');
    const given = arg.slice(0, eq === -1 ? undefined : eq);
    const spec = long ? byName.get(given.slice(2)) : byShort.get(given.slice(1));
    if (spec === undefined) throw new ConfigError(given, 'unknown flag (see --help)');
    const name = spec.name;
    let raw: string | undefined;
    if (spec.kind === 'boolean') {
      raw = eq === -1 ? 'true' : arg.slice(eq + 1);
      if (raw !== 'true' && raw !== 'false') throw new ConfigError(`--${name}`, 'expected true or false');
      values.set(name, raw === 'true');
      continue;
    }
    if (eq !== -1) raw = arg.slice(eq + 1);
    else {
      raw = argv[++i];
      if (raw === undefined) throw new ConfigError(`--${name}`, 'needs a value');
    }
    const value = convert(spec, raw);
    if (spec.repeatable) values.set(name, [...((values.get(name) as unknown[]) ?? []), value]);
    else values.set(name, value);
  }
  return { values, rest: argv.slice(i), ended };
}

function convert(spec: FlagSpec, raw: string): unknown {
  switch (spec.kind) {
    case 'number': {
      if (!/^-?\d+$/.test(raw))
        throw new ConfigError(`--${spec.name}`, `expected a whole number, got '${raw}'`);
      return Number(raw);
    }
    case 'decimal': {
      if (!/^-?(\d+(\.\d*)?|\.\d+)$/.test(raw))
        throw new ConfigError(`--${spec.name}`, `expected a number, got '${raw}'`);
      return Number(raw);
    }
    case 'list':
      return raw === '' ? [] : raw.split(',').map((s) => s.trim());
    default:
      return raw;
  }
}

/** Sets a dotted path in a plain object, creating intermediate objects. */
export function setPath(obj: Record<string, unknown>, path: string, value: unknown): void {
  const parts = path.split('.');
  let cur = obj;
  for (let i = 0; i < parts.length - 1; i++) {
    const p = parts[i]!;
    const next = cur[p];
    if (typeof next !== 'object' || next === null || Array.isArray(next)) cur[p] = {};
    cur = cur[p] as Record<string, unknown>;
  }
  cur[parts[parts.length - 1]!] = value;
}

/** The width of the flags' column of a command's help. */
const HELP_COLUMN = 34;

export function formatHelp(usage: string, specs: readonly FlagSpec[]): string {
  const lines = [usage, '', 'Options:'];
  for (const s of specs) {
    const arg = s.kind === 'boolean' ? '' : s.kind === 'number' || s.kind === 'decimal' ? ' N' : ' VALUE';
    const flag = `${s.short === undefined ? '    ' : `-${s.short}, `}--${s.name}${arg}`;
    // A flag too long for its column gets its help on the next line, in the column of the others.
    if (flag.length > HELP_COLUMN) lines.push(`  ${flag}`, `  ${' '.repeat(HELP_COLUMN)} ${s.help}`);
    else lines.push(`  ${flag.padEnd(HELP_COLUMN)} ${s.help}`);
  }
  lines.push(`  ${'-h, --help'.padEnd(HELP_COLUMN)} show this help`);
  return lines.join('\n');
}

/**
 * Like parseFlags, for commands whose options may come before and after their positional
 * arguments (`trellis stat -o json deploy/web -n shop`). Every positional argument is in `rest`,
 * in order; after `--` every argument is positional.
 */
export function parseInterleaved(argv: readonly string[], specs: readonly FlagSpec[]): ParsedFlags {
  let args: readonly string[] = argv;
  const values = new Map<string, unknown>();
  const rest: string[] = [];
  // Each round takes at least one argument or ends: bounded by argv's length.
  for (;;) {
    const parsed = parseFlags(args, specs);
    for (const [key, value] of parsed.values) values.set(key, value);
    if (parsed.ended || parsed.rest.length === 0) {
      rest.push(...parsed.rest);
      return { values, rest, ended: parsed.ended };
    }
    rest.push(parsed.rest[0]!);
    args = parsed.rest.slice(1);
  }
}
