// The regular expressions routes may hold (path, header, query parameter, gRPC service and
// method matches of type RegularExpression), checked when a route is applied and compiled once
// per route set, never per request.
//
// Gateway API leaves the dialect to the implementation; Trellis takes JavaScript's syntax
// restricted to what a linear-time engine can run (RE2's spirit), at most 1024 characters, no
// flags. Why: V8's default engine backtracks, and a pattern like (a+)+$ takes seconds on a
// 30-byte path. The restriction is checked by V8 itself: a pattern is accepted only when it
// compiles with the "l" flag of V8's experimental linear engine, which refuses backreferences,
// lookaround and bounded repetitions above 16 (or nested ones, which multiply); named groups and
// inline modifiers (any "(?" other than "(?:") are refused beforehand, with a clearer message
// for the common cases. At run time, `enableLinearRegexFallback` (called once by a process that
// matches routes) makes V8 rerun a regular expression on that linear engine after excessive
// backtracking, so normal paths keep the fast backtracking engine and a hostile path costs linear
// time instead of minutes (test/unit/routes-regex.test.ts). The flags "u" and "i" would disable
// that fallback, hence none.
//
// Matching is whole-value: a pattern is compiled as ^(?:PATTERN)$ (as Envoy and Istio do).
//
// A pattern's size is bounded too (regexProgramSize, at most MAX_REGEX_PROGRAM_SIZE, after
// Envoy's default bound on an RE2 program's size): the linear engine's time grows with the
// pattern's states times the value's length, and a route's patterns run in every caller's proxy
// on every request to the Service. With no bound, a 402-character pattern, (?:a?a?...a?)*b with
// 200 optional atoms, cost 145 ms per match of an 8 KB path (4.4 ms of a 256-byte one); at the
// bound the worst shape costs ~63 ms on 8 KB and ~2.7 ms on 256 bytes, and ordinary patterns a
// few microseconds (they never leave the backtracking engine).
import { setFlagsFromString } from 'node:v8';
import { LruMap } from '../lru-map.ts';

export const MAX_REGEX_LENGTH = 1024;
/** The most states (regexProgramSize) a route's pattern may have. */
export const MAX_REGEX_PROGRAM_SIZE = 100;

// Both the check and the compiled matcher are kept per pattern, for the last MAX_KEPT patterns:
// every update of a Service's routes recompiles its whole route set in every proxy that calls it
// (src/proxy/route/route-table.ts), and the regular expressions were 40% of that (parsing a
// 1024-character pattern twice, once for the linear engine), so that a Service owner editing a
// route full of them stalled every caller's proxy again for routes that had not changed. A kept
// RegExp is safe to share: it has no flags, so no lastIndex state.
const MAX_KEPT = 256;
const problems = new LruMap<string, string | null>(MAX_KEPT);
const matchers = new LruMap<string, RegExp>(MAX_KEPT);

/** `map`'s value of `key`, made by `make` when not kept. */
function kept<V>(map: LruMap<string, V>, key: string, make: (key: string) => V): V {
  if (map.has(key)) return map.get(key)!;
  const value = make(key);
  map.set(key, value);
  return value;
}

/** Why `pattern` is not an accepted route regular expression, or null when it is. */
export function regexProblem(pattern: string): string | null {
  // Kept only within the length bound: a kept key is at most 1 KB.
  if (pattern.length > MAX_REGEX_LENGTH) return `longer than ${MAX_REGEX_LENGTH} characters`;
  return kept(problems, pattern, checkPattern);
}

function checkPattern(pattern: string): string | null {
  if (pattern.length === 0) return 'expected a regular expression, got an empty string';
  if (/\\[1-9]|\\k</.test(stripEscapedBackslashes(pattern))) {
    return 'backreferences (\\1, \\k<name>) are not supported (they need a backtracking engine)';
  }
  if (/\(\?(?!:)/.test(stripEscapedBackslashes(pattern).replace(/\\\(/g, ''))) {
    return 'only "(?:" groups are supported: no lookaround, named groups or inline flags';
  }
  try {
    new RegExp(pattern);
  } catch (error) {
    return `not a valid regular expression (${(error as Error).message.replace(/^Invalid regular expression: /, '')})`;
  }
  enableLinearEngine();
  try {
    new RegExp(`^(?:${pattern})$`, LINEAR_FLAG);
  } catch {
    return 'cannot be run in linear time (V8 refuses it: e.g. a bounded repetition {n,m} above 16, or nested ones)';
  }
  const size = regexProgramSize(pattern);
  if (size > MAX_REGEX_PROGRAM_SIZE) {
    return (
      `too complex: about ${size} states, at most ${MAX_REGEX_PROGRAM_SIZE} (every request matched against ` +
      'it costs time in proportion to its states times the length of the value)'
    );
  }
  return null;
}

/** V8's "linear" flag (not standard JavaScript, so not written as a literal lint would check). */
const LINEAR_FLAG: string = 'l';

let linearEngineEnabled = false;

/** Makes the "l" flag (V8's experimental linear engine) available; process-wide, idempotent. */
function enableLinearEngine(): void {
  if (linearEngineEnabled) return;
  linearEngineEnabled = true;
  setFlagsFromString('--enable-experimental-regexp-engine');
}

/** `\\` pairs removed, so "\\\\1" (a literal backslash then "1") is not taken for a backreference. */
function stripEscapedBackslashes(pattern: string): string {
  return pattern.replace(/\\\\/g, '');
}

/** The whole-value matcher of an accepted pattern (check regexProblem first; throws if invalid). */
export function compileFullMatch(pattern: string): RegExp {
  // Every matcher (kept ones too) is made after the linear fallback is on, whoever asks first.
  enableLinearRegexFallback();
  const compile = (p: string): RegExp => new RegExp(`^(?:${p})$`);
  return pattern.length > MAX_REGEX_LENGTH ? compile(pattern) : kept(matchers, pattern, compile);
}

let fallbackEnabled = false;

/**
 * Lets V8 rerun a regular expression on its linear-time engine once it backtracks too much (a
 * process-wide V8 flag, for regular expressions compiled after the call). Idempotent.
 */
export function enableLinearRegexFallback(): void {
  if (fallbackEnabled) return;
  fallbackEnabled = true;
  setFlagsFromString('--enable-experimental-regexp-engine-on-excessive-backtracks');
}

/**
 * About how many states an automaton for `pattern` (a valid JavaScript regular expression) has,
 * as RE2 counts a program's instructions: one per character, class, escape, anchor or dot, one
 * more per alternative, group or quantifier, and a bounded repetition {n,m} as m copies of what it
 * repeats ({n,}: n + 1). An estimate for bounding cost, not a compiler: over rather than under.
 */
export function regexProgramSize(pattern: string): number {
  let i = 0;
  const n = pattern.length;

  const alternation = (): number => {
    let size = sequence();
    while (i < n && pattern[i] === '|') {
      i++;
      size += 1 + sequence();
    }
    return size;
  };

  const sequence = (): number => {
    let size = 0;
    while (i < n && pattern[i] !== '|' && pattern[i] !== ')') size += term();
    return size;
  };

  const term = (): number => {
    let size = atom();
    const c = pattern[i];
    if (c === '*' || c === '+' || c === '?') {
      i++;
      size += 1;
    } else if (c === '{') {
      const m = /^\{(\d+)(,(\d*))?\}/.exec(pattern.slice(i, i + 24));
      if (m === null) return size; // a literal "{" (atom reads it next)
      i += m[0].length;
      const low = Number(m[1]);
      const copies = m[2] === undefined ? low : m[3] === '' ? low + 1 : Number(m[3]);
      size = size * Math.max(1, copies) + 1;
    } else return size;
    if (pattern[i] === '?') i++; // lazy
    return size;
  };

  const atom = (): number => {
    const c = pattern[i++];
    if (c === '(') {
      if (pattern[i] === '?' && pattern[i + 1] === ':') i += 2;
      const size = alternation();
      if (pattern[i] === ')') i++;
      return size + 1;
    }
    if (c === '[') {
      if (pattern[i] === '^') i++;
      while (i < n && pattern[i] !== ']') i += pattern[i] === '\\' ? 2 : 1;
      i++;
      return 1;
    }
    if (c === '\\') {
      const e = pattern[i++];
      if (e === 'x') i += 2;
      else if (e === 'u') i += pattern[i] === '{' ? pattern.indexOf('}', i) - i + 1 : 4;
      else if (e === 'c') i += 1;
      return 1;
    }
    return 1;
  };

  let size = 0;
  while (i < n) {
    size += alternation();
    if (i < n) i++; // an unbalanced ")" (not in a valid pattern): skip it
  }
  return size;
}
