// Parsing of the Prometheus text exposition format (0.0.4), for whoever reads the proxies'
// /metrics pages: the CLI's `trellis demo` and the control plane's metrics collector (which
// answers `trellis stat`). It is lenient the way a viewer should be: a line it cannot read is
// skipped, never an exception, so one odd series cannot blank a whole table. Comments (# HELP,
// # TYPE) are skipped: names and `le` labels are enough.

export interface PromSample {
  readonly name: string;
  /** Label values by name (a null-prototype object: any label name is safe as a key). */
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
  /** The optional timestamp, in milliseconds since the Unix epoch. */
  readonly timestampMs?: number;
}

const NAME_START = /[a-zA-Z_:]/;
const NAME_CHAR = /[a-zA-Z0-9_:]/;
const LABEL_START = /[a-zA-Z_]/;
const LABEL_CHAR = /[a-zA-Z0-9_]/;
const FLOAT = /^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$/;
const INTEGER = /^[+-]?\d+$/;

/** A sample value as Prometheus writes it: a float, NaN, +Inf, -Inf (case-insensitive). Null if not. */
export function parseSampleValue(token: string): number | null {
  if (FLOAT.test(token)) return Number(token);
  const lower = token.toLowerCase();
  if (lower === 'nan') return NaN;
  if (lower === '+inf' || lower === 'inf') return Infinity;
  if (lower === '-inf') return -Infinity;
  return null;
}

/** Every sample of a page, in the order of the page; unreadable lines are left out. */
export function parsePrometheusText(text: string): PromSample[] {
  const samples: PromSample[] = [];
  let start = 0;
  while (start <= text.length) {
    let end = text.indexOf('\n', start);
    if (end === -1) end = text.length;
    const sample = parseSampleLine(text.slice(start, end));
    if (sample !== null) samples.push(sample);
    start = end + 1;
  }
  return samples;
}

/** One line of the format: a sample, or null for comments, blank lines and anything malformed. */
export function parseSampleLine(rawLine: string): PromSample | null {
  const line = rawLine.endsWith('\r') ? rawLine.slice(0, -1) : rawLine;
  let i = skipBlanks(line, 0);
  if (i >= line.length || line[i] === '#') return null;
  const nameStart = i;
  if (!NAME_START.test(line[i]!)) return null;
  while (i < line.length && NAME_CHAR.test(line[i]!)) i++;
  const name = line.slice(nameStart, i);
  const labels: Record<string, string> = Object.create(null);
  const afterName = skipBlanks(line, i);
  if (line[afterName] === '{') {
    i = parseLabels(line, afterName + 1, labels);
    if (i === -1) return null;
  } else if (afterName === i) {
    return null; // the name must be followed by labels or by whitespace
  }
  const rest = line
    .slice(i)
    .trim()
    .split(/[ \t]+/);
  if (rest.length > 2) return null;
  const value = parseSampleValue(rest[0]!);
  if (value === null) return null;
  if (rest.length === 2) {
    if (!INTEGER.test(rest[1]!)) return null;
    return { name, labels, value, timestampMs: Number(rest[1]) };
  }
  return { name, labels, value };
}

function skipBlanks(line: string, i: number): number {
  while (i < line.length && (line[i] === ' ' || line[i] === '\t')) i++;
  return i;
}

/** Reads `a="x",b="y"}` from just after the `{`; returns the index after `}`, or -1 if malformed. */
function parseLabels(line: string, from: number, into: Record<string, string>): number {
  let i = skipBlanks(line, from);
  while (i < line.length) {
    if (line[i] === '}') return i + 1;
    const nameStart = i;
    if (!LABEL_START.test(line[i]!)) return -1;
    while (i < line.length && LABEL_CHAR.test(line[i]!)) i++;
    const labelName = line.slice(nameStart, i);
    i = skipBlanks(line, i);
    if (line[i] !== '=') return -1;
    i = skipBlanks(line, i + 1);
    if (line[i] !== '"') return -1;
    i++;
    let value = '';
    let closed = false;
    while (i < line.length) {
      const c = line[i]!;
      if (c === '"') {
        closed = true;
        i++;
        break;
      }
      if (c === '\\' && i + 1 < line.length) {
        const next = line[i + 1]!;
        value += next === 'n' ? '\n' : next === '\\' || next === '"' ? next : c + next;
        i += 2;
        continue;
      }
      value += c;
      i++;
    }
    if (!closed || Object.hasOwn(into, labelName)) return -1;
    into[labelName] = value;
    i = skipBlanks(line, i);
    if (line[i] === ',') i = skipBlanks(line, i + 1);
    else if (line[i] !== '}') return -1;
  }
  return -1;
}

/** Whether a sample carries every given label with the given value. */
export function hasLabels(sample: PromSample, match: Readonly<Record<string, string>>): boolean {
  for (const key of Object.keys(match)) {
    if (sample.labels[key] !== match[key]) return false;
  }
  return true;
}

/** The sum of the samples named `name` whose labels include `match` (0 when there are none). */
export function sumSamples(
  samples: readonly PromSample[],
  name: string,
  match: Readonly<Record<string, string>> = {},
): number {
  let sum = 0;
  for (const s of samples) if (s.name === name && hasLabels(s, match)) sum += s.value;
  return sum;
}

/** One cumulative histogram bucket: observations <= le. */
export interface CumulativeBucket {
  readonly le: number;
  readonly count: number;
}

/**
 * The cumulative buckets of histogram `name` (its `name_bucket` series) whose labels include
 * `match`, summed across the other labels per `le` and sorted by bound. Buckets whose `le` is not
 * a number are skipped.
 */
export function histogramBuckets(
  samples: readonly PromSample[],
  name: string,
  match: Readonly<Record<string, string>> = {},
): CumulativeBucket[] {
  const byBound = new Map<number, number>();
  const bucketName = `${name}_bucket`;
  for (const s of samples) {
    if (s.name !== bucketName || !hasLabels(s, match)) continue;
    const le = parseSampleValue(s.labels.le ?? '');
    if (le === null || Number.isNaN(le)) continue;
    byBound.set(le, (byBound.get(le) ?? 0) + s.value);
  }
  return [...byBound.entries()].sort((a, b) => a[0] - b[0]).map(([le, count]) => ({ le, count }));
}
