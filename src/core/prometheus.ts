// A small Prometheus registry: counter, gauge and histogram families with fixed label names,
// rendered in the text exposition format 0.0.4.
//
// Written here instead of using prom-client because the proxy's data path records several metrics
// per request at 16k+ req/s on one core: prom-client builds a label-set key string (and often an
// object) on every call. Here a family hands out a child object once per label set (the caller
// caches it), and recording is a plain `child.value += 1` on a number: no strings, no allocation.
// All string work (escaping, formatting) happens once at child creation or at render time.
// The control plane renders its own /metrics with it too, hence its place in src/core.

export type LabelValues = readonly string[];

/** Escapes a label value as the exposition format requires (backslash, double quote, newline). */
export function escapeLabelValue(value: string): string {
  return value.replace(/[\\"\n]/g, (c) => (c === '\\' ? '\\\\' : c === '"' ? '\\"' : '\\n'));
}

/** Escapes HELP text (backslash and newline only). */
function escapeHelp(text: string): string {
  return text.replace(/[\\\n]/g, (c) => (c === '\\' ? '\\\\' : '\\n'));
}

/** Formats a sample value: integers plainly, NaN and the infinities as Prometheus spells them. */
export function formatSampleValue(value: number): string {
  if (Number.isNaN(value)) return 'NaN';
  if (value === Infinity) return '+Inf';
  if (value === -Infinity) return '-Inf';
  return String(value);
}

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

/** `a="x",b="y"` for a label set (no braces); '' when there are no labels. */
function labelPairs(names: readonly string[], values: LabelValues): string {
  let out = '';
  for (let i = 0; i < names.length; i++) {
    if (i > 0) out += ',';
    out += `${names[i]}="${escapeLabelValue(values[i] ?? '')}"`;
  }
  return out;
}

abstract class Family<Child> {
  readonly name: string;
  readonly help: string;
  readonly labelNames: readonly string[];
  protected readonly children = new Map<string, { pairs: string; child: Child }>();

  constructor(name: string, help: string, labelNames: readonly string[]) {
    if (!METRIC_NAME.test(name)) throw new Error(`invalid metric name ${JSON.stringify(name)}`);
    for (const l of labelNames) {
      if (!LABEL_NAME.test(l) || l.startsWith('__') || l === 'le') {
        throw new Error(`invalid label name ${JSON.stringify(l)} for ${name}`);
      }
    }
    this.name = name;
    this.help = help;
    this.labelNames = labelNames;
  }

  /**
   * The child for one label set, created on first use. This builds a key string, so callers on a
   * hot path look a child up once and keep it (e.g. in an array indexed by enum positions).
   */
  labels(...values: string[]): Child {
    if (values.length !== this.labelNames.length) {
      throw new Error(`${this.name} takes ${this.labelNames.length} label values, got ${values.length}`);
    }
    const key = values.join('\u0000');
    let entry = this.children.get(key);
    if (entry === undefined) {
      entry = { pairs: labelPairs(this.labelNames, values), child: this.newChild() };
      this.children.set(key, entry);
    }
    return entry.child;
  }

  protected abstract newChild(): Child;
  protected abstract type(): 'counter' | 'gauge' | 'histogram';
  protected abstract renderChild(pairs: string, child: Child): string;

  render(): string {
    let out = `# HELP ${this.name} ${escapeHelp(this.help)}\n# TYPE ${this.name} ${this.type()}\n`;
    for (const { pairs, child } of this.children.values()) out += this.renderChild(pairs, child);
    return out;
  }
}

/** Reads a child's value: from its collect function when it has one (NaN if that throws). */
function readValue(child: { value: number; collect: (() => number) | undefined }): number {
  if (child.collect === undefined) return child.value;
  try {
    return child.collect();
  } catch {
    return NaN;
  }
}

/**
 * A counter child: only ever increases. `value` is a plain field so hot paths can `+=` it; or
 * `collect` reads a total kept elsewhere (e.g. CPU time) at render time.
 */
export class Counter {
  value = 0;
  collect: (() => number) | undefined = undefined;
  inc(by = 1): void {
    if (by > 0) this.value += by;
  }
}

export class CounterFamily extends Family<Counter> {
  constructor(name: string, help: string, labelNames: readonly string[] = []) {
    if (!name.endsWith('_total')) throw new Error(`counter ${name} must end in _total`);
    super(name, help, labelNames);
  }
  protected newChild(): Counter {
    return new Counter();
  }
  protected type(): 'counter' {
    return 'counter';
  }
  protected renderChild(pairs: string, child: Counter): string {
    return `${this.name}${pairs ? `{${pairs}}` : ''} ${formatSampleValue(readValue(child))}\n`;
  }
}

/** A gauge child: set, raised or lowered; or read from a function at render time. */
export class Gauge {
  value = 0;
  /** When set, the value is read from this function at render time instead. */
  collect: (() => number) | undefined = undefined;
  set(v: number): void {
    this.value = v;
  }
  inc(by = 1): void {
    this.value += by;
  }
  dec(by = 1): void {
    this.value -= by;
  }
}

export class GaugeFamily extends Family<Gauge> {
  protected newChild(): Gauge {
    return new Gauge();
  }
  protected type(): 'gauge' {
    return 'gauge';
  }
  protected renderChild(pairs: string, child: Gauge): string {
    return `${this.name}${pairs ? `{${pairs}}` : ''} ${formatSampleValue(readValue(child))}\n`;
  }
}

/**
 * A histogram child. `counts[i]` counts observations in bucket i only (not cumulative; the
 * last slot is +Inf); render() accumulates them.
 */
export class Histogram {
  readonly bounds: readonly number[];
  readonly counts: Float64Array;
  sum = 0;
  count = 0;
  constructor(bounds: readonly number[]) {
    this.bounds = bounds;
    this.counts = new Float64Array(bounds.length + 1);
  }
  observe(v: number): void {
    const bounds = this.bounds;
    let i = 0;
    while (i < bounds.length && v > bounds[i]!) i++;
    this.counts[i]! += 1;
    this.sum += v;
    this.count += 1;
  }
}

export class HistogramFamily extends Family<Histogram> {
  readonly bounds: readonly number[];
  private readonly leLabels: readonly string[];

  constructor(name: string, help: string, labelNames: readonly string[], bounds: readonly number[]) {
    super(name, help, labelNames);
    for (let i = 0; i < bounds.length; i++) {
      if (!Number.isFinite(bounds[i]) || (i > 0 && bounds[i]! <= bounds[i - 1]!)) {
        throw new Error(`histogram ${name}: bucket bounds must be finite and increasing`);
      }
    }
    this.bounds = [...bounds];
    this.leLabels = [...bounds.map(formatSampleValue), '+Inf'];
  }
  protected newChild(): Histogram {
    return new Histogram(this.bounds);
  }
  protected type(): 'histogram' {
    return 'histogram';
  }
  protected renderChild(pairs: string, child: Histogram): string {
    const sep = pairs ? ',' : '';
    let out = '';
    let cumulative = 0;
    for (let i = 0; i < this.leLabels.length; i++) {
      cumulative += child.counts[i]!;
      out += `${this.name}_bucket{${pairs}${sep}le="${this.leLabels[i]}"} ${cumulative}\n`;
    }
    const braces = pairs ? `{${pairs}}` : '';
    out += `${this.name}_sum${braces} ${formatSampleValue(child.sum)}\n`;
    out += `${this.name}_count${braces} ${child.count}\n`;
    return out;
  }
}

export type AnyFamily = CounterFamily | GaugeFamily | HistogramFamily;

/** A set of families rendered together, in registration order. Names must be unique. */
export class Registry {
  private readonly families: AnyFamily[] = [];
  private readonly names = new Set<string>();

  register<F extends AnyFamily>(family: F): F {
    if (this.names.has(family.name)) throw new Error(`metric ${family.name} registered twice`);
    this.names.add(family.name);
    this.families.push(family);
    return family;
  }

  counter(name: string, help: string, labelNames: readonly string[] = []): CounterFamily {
    return this.register(new CounterFamily(name, help, labelNames));
  }
  gauge(name: string, help: string, labelNames: readonly string[] = []): GaugeFamily {
    return this.register(new GaugeFamily(name, help, labelNames));
  }
  histogram(name: string, help: string, labelNames: readonly string[], bounds: readonly number[]) {
    return this.register(new HistogramFamily(name, help, labelNames, bounds));
  }

  /** The text exposition format 0.0.4. */
  render(): string {
    let out = '';
    for (const f of this.families) out += f.render();
    return out;
  }
}
