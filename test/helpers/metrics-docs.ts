// docs/metrics.md against real /metrics pages: the families its tables document (name, type,
// labels) and what a page holds that the docs do not say (an undocumented family, another type, an
// undocumented label). Also the metric names a PromQL expression uses, for checking the Grafana
// dashboard against the documented families.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parsePrometheusText } from '../../src/core/prom-parse.ts';
import { REPO } from './proxy-process.ts';

export interface DocumentedFamily {
  readonly type: string;
  readonly labels: ReadonlySet<string>;
}

/** The rows `| \`name\` | type | \`a\`, \`b\` | meaning |` of docs/metrics.md, by family name. */
export function documentedFamilies(
  text = readFileSync(join(REPO, 'docs/metrics.md'), 'utf8'),
): Map<string, DocumentedFamily> {
  const families = new Map<string, DocumentedFamily>();
  for (const line of text.split('\n')) {
    const row =
      /^\|\s*`([a-zA-Z_:][a-zA-Z0-9_:]*)`\s*\|\s*(counter|gauge|histogram|summary)\s*\|([^|]*)\|/.exec(line);
    if (row === null) continue;
    const labels = new Set([...row[3]!.matchAll(/`([a-zA-Z_][a-zA-Z0-9_]*)`/g)].map((m) => m[1]!));
    families.set(row[1]!, { type: row[2]!, labels });
  }
  return families;
}

/** The families of a /metrics page: type from `# TYPE`, label names from its samples (`le` aside). */
export function pageFamilies(page: string): Map<string, DocumentedFamily> {
  const types = new Map<string, string>();
  for (const m of page.matchAll(/^# TYPE (\S+) (\S+)$/gm)) types.set(m[1]!, m[2]!);
  const labels = new Map<string, Set<string>>([...types.keys()].map((name) => [name, new Set<string>()]));
  for (const sample of parsePrometheusText(page)) {
    const family = [sample.name, sample.name.replace(/_(bucket|sum|count)$/, '')].find((n) => types.has(n));
    if (family === undefined) continue;
    for (const label of Object.keys(sample.labels)) if (label !== 'le') labels.get(family)!.add(label);
  }
  return new Map([...types].map(([name, type]) => [name, { type, labels: labels.get(name)! }]));
}

/** What `page` holds that docs/metrics.md does not document; empty when the docs are true. */
export function undocumented(page: string, docs = documentedFamilies()): string[] {
  const problems: string[] = [];
  for (const [name, family] of pageFamilies(page)) {
    const doc = docs.get(name);
    if (doc === undefined) {
      problems.push(`${name} (${family.type}) is not in docs/metrics.md`);
      continue;
    }
    if (doc.type !== family.type)
      problems.push(`${name} is a ${family.type}, docs/metrics.md says ${doc.type}`);
    for (const label of family.labels) {
      if (!doc.labels.has(label)) problems.push(`${name} has label ${label}, not in docs/metrics.md`);
    }
  }
  return problems;
}

const PROMQL_WORDS = new Set([
  'sum',
  'avg',
  'min',
  'max',
  'count',
  'rate',
  'irate',
  'increase',
  'by',
  'without',
  'on',
  'ignoring',
  'histogram_quantile',
  'clamp_min',
  'clamp_max',
  'and',
  'or',
  'unless',
  'bool',
  'offset',
  'le',
  'group_left',
  'group_right',
  'abs',
  'vector',
  'scalar',
  'topk',
  'bottomk',
  'label_replace',
]);

/**
 * The metric names of a PromQL expression: identifiers outside label matchers, `by (...)` lists
 * and strings that are not functions or keywords. Enough for the expressions of a dashboard.
 */
export function promqlMetricNames(expr: string): string[] {
  const stripped = expr
    .replace(/"(?:[^"\\]|\\.)*"/g, '""')
    .replace(/\{[^}]*\}/g, '{}')
    .replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, '$1')
    .replace(/\[[^\]]*\]/g, '[]')
    .replace(/\$\w+/g, '');
  const names = new Set<string>();
  for (const m of stripped.matchAll(/[a-zA-Z_:][a-zA-Z0-9_:]*/g)) {
    const word = m[0];
    const next = stripped.slice(m.index + word.length).trimStart();
    if (PROMQL_WORDS.has(word) || next.startsWith('(')) continue;
    names.add(word);
  }
  return [...names];
}

/** A metric name a query may use: a documented family, or a histogram's _bucket/_sum/_count series. */
export function isDocumentedSeries(name: string, docs = documentedFamilies()): boolean {
  if (docs.has(name)) return true;
  const base = /^(.*)_(bucket|sum|count)$/.exec(name)?.[1];
  return base !== undefined && docs.get(base)?.type === 'histogram';
}

/** The Grafana dashboard of the golden metrics, parsed. */
export function grafanaDashboard(): {
  panels: { id: number; title: string; targets: { expr: string }[] }[];
  templating: { list: { name: string; type: string; query: unknown }[] };
} {
  return JSON.parse(readFileSync(join(REPO, 'deploy/grafana/trellis-golden.json'), 'utf8'));
}
