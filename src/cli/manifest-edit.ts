// Edits the pod templates of Kubernetes manifests in place, for `trellis inject` and `trellis
// uninject`: multi-document YAML (or JSON) in, the same text out with only the pod templates the
// edit changes rewritten. The text is cut into the parser's own tokens (yaml's CST), which put
// together give back the input exactly; every document the edit leaves alone, and everything
// between documents (comments, `---`, `...`, directives), is copied byte for byte. A changed
// document is re-printed from its Document (comments kept, sequences indented as the document
// had them), with the edit's JSONPatch operations applied to its nodes.
//
// Pod templates: a Pod itself; `spec.template` of Deployments, StatefulSets, DaemonSets,
// ReplicaSets, ReplicationControllers and Jobs; `spec.jobTemplate.spec.template` of CronJobs; and
// those inside `List`s (any kind ending in `List` with `items`). A document that is not YAML, or
// whose value is not a Kubernetes object (a mapping with apiVersion and kind), is an error naming
// the document and its line; an empty document passes.
import { readFile } from 'node:fs/promises';
import { text as streamText } from 'node:stream/consumers';
import { Composer, CST, Document, isMap, isSeq, Parser, type Node as YamlNode } from 'yaml';
import { ConfigError } from '../core/errors.ts';
import {
  applyPatch,
  arrayIndex,
  pointerSegments,
  type AnyPatchOperation,
} from '../control/injector/patch.ts';

/** One pod template found in a document. */
export interface PodTemplateRef {
  /** 1-based, counting every document of the input. */
  readonly document: number;
  readonly kind: string;
  readonly name: string;
  readonly namespace: string | undefined;
  /** Where the template is in the document's value. */
  readonly path: readonly (string | number)[];
  /** The template as a plain object (a Pod: the Pod itself). */
  readonly template: unknown;
}

/** What to do to one template: operations relative to it (none: leave it alone). */
export type TemplateEdit = (ref: PodTemplateRef) => readonly AnyPatchOperation[];

/** Tells the user about a template the edit could not be applied to (the document stays as it was). */
export type Warn = (ref: PodTemplateRef, message: string) => void;

const TEMPLATE_PATHS: Readonly<Record<string, readonly string[]>> = {
  Pod: [],
  Deployment: ['spec', 'template'],
  StatefulSet: ['spec', 'template'],
  DaemonSet: ['spec', 'template'],
  ReplicaSet: ['spec', 'template'],
  ReplicationController: ['spec', 'template'],
  Job: ['spec', 'template'],
  CronJob: ['spec', 'jobTemplate', 'spec', 'template'],
};

type Json = Record<string, unknown>;
const isObject = (value: unknown): value is Json =>
  typeof value === 'object' && value !== null && !Array.isArray(value);

/** `kind/name` for messages. */
export const describe = (ref: Pick<PodTemplateRef, 'kind' | 'name'>): string =>
  `${ref.kind.toLowerCase()}/${ref.name}`;

function getIn(value: unknown, path: readonly (string | number)[]): unknown {
  return path.reduce<unknown>(
    (v, key) => (isObject(v) || Array.isArray(v) ? (v as Json)[key] : undefined),
    value,
  );
}

/** The pod templates of one document's value; throws a message when it is not Kubernetes objects. */
function findTemplates(value: unknown, document: number, path: (string | number)[] = []): PodTemplateRef[] {
  const where = path.length === 0 ? '' : ` (${path.join('.')})`;
  if (!isObject(value) || typeof value['apiVersion'] !== 'string' || typeof value['kind'] !== 'string') {
    throw new Error(`not a Kubernetes object${where}: expected a mapping with apiVersion and kind`);
  }
  const kind = value['kind'];
  if (kind.endsWith('List') && Array.isArray(value['items'])) {
    return value['items'].flatMap((item, i) => findTemplates(item, document, [...path, 'items', i]));
  }
  const templatePath = TEMPLATE_PATHS[kind];
  if (templatePath === undefined) return [];
  const metadata = isObject(value['metadata']) ? value['metadata'] : {};
  const text = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);
  return [
    {
      document,
      kind,
      name: text(metadata['name']) ?? text(metadata['generateName']) ?? '(unnamed)',
      namespace: text(metadata['namespace']),
      path: [...path, ...templatePath],
      template: getIn(value, templatePath),
    },
  ];
}

/** Applies `operations` (relative to the node at `base`) to the document's nodes. */
function applyToDocument(
  doc: Document,
  base: readonly (string | number)[],
  operations: readonly AnyPatchOperation[],
): void {
  for (const operation of operations) {
    const segments = pointerSegments(operation.path);
    const last = segments.pop()!;
    const parent = doc.getIn([...base, ...segments], true) as YamlNode | undefined;
    if (isSeq(parent)) {
      const index = arrayIndex(last, parent.items.length, operation.op);
      if (operation.op === 'add') parent.items.splice(index, 0, doc.createNode(operation.value));
      else parent.items.splice(index, 1);
    } else if (isMap(parent)) {
      if (operation.op === 'add') parent.set(last, doc.createNode(operation.value));
      else if (!parent.delete(last)) throw new TypeError(`${operation.path}: nothing to remove`);
    } else {
      // An alias (`*anchor`) or a scalar where a mapping or list should be.
      throw new TypeError(`${operation.path}: not a mapping or list in the YAML`);
    }
  }
}

/** The text of FILE, or of standard input for `-`; ConfigError of `-f` when it cannot be read. */
export async function readManifests(file: string): Promise<string> {
  if (file === '-') return streamText(process.stdin);
  try {
    return await readFile(file, 'utf8');
  } catch (error) {
    throw new ConfigError('-f', `cannot read ${file}: ${(error as NodeJS.ErrnoException).code ?? error}`);
  }
}

const lineOf = (source: string, offset: number): number => {
  let line = 1;
  for (let i = source.indexOf('\n'); i !== -1 && i < offset; i = source.indexOf('\n', i + 1)) line++;
  return line;
};

/** kubectl prints `key:\n- item` (lists not indented under their key); keep a document's style. */
const indentsSequences = (text: string): boolean => !/^( *)[^\s#-][^\n]*:[ \t]*\r?\n\1- /m.test(text);

/**
 * The manifests with `edit` applied to every pod template. `sourceName` (a file, or stdin) names
 * the input in errors (ConfigError of `-f`); `warn` hears of every template whose operations do
 * not apply (it is left as it was).
 */
export function editManifests(
  source: string,
  sourceName: string,
  edit: TemplateEdit,
  warn: Warn,
): { text: string; changed: PodTemplateRef[] } {
  const out: string[] = [];
  const edited: PodTemplateRef[] = [];
  const directives: CST.Token[] = [];
  let document = 0;
  for (const token of new Parser().parse(source)) {
    if (token.type !== 'document') {
      if (token.type === 'error') {
        throw new ConfigError(
          '-f',
          `${sourceName}: document ${document + 1} (line ${lineOf(source, token.offset)}): not YAML: ${token.message}`,
        );
      }
      if (token.type === 'directive') directives.push(token);
      if (token.type === 'doc-end') directives.length = 0;
      out.push(CST.stringify(token));
      continue;
    }
    document++;
    const text = CST.stringify(token);
    const line = lineOf(source, token.offset);
    const fail = (message: string): never => {
      throw new ConfigError('-f', `${sourceName}: document ${document} (line ${line}): ${message}`);
    };
    const prelude = directives.splice(0);
    const compose = (): Document => {
      const composer = new Composer();
      const docs = [...prelude, token].flatMap((t) => [...composer.next(t)]).concat([...composer.end()]);
      return docs[0] as Document;
    };
    let doc = compose();
    const error = doc.errors[0];
    if (error !== undefined)
      fail(`not YAML: ${error.message.split('\n')[0]} (line ${lineOf(source, error.pos[0])})`);
    let value: unknown;
    try {
      value = doc.toJS();
    } catch (e) {
      fail(`not YAML: ${(e as Error).message}`); // an alias without its anchor
    }
    if (value === null || value === undefined) {
      out.push(text);
      continue;
    }
    let templates: PodTemplateRef[] = [];
    try {
      templates = findTemplates(value, document);
    } catch (e) {
      fail((e as Error).message);
    }
    // Templates whose operations do not apply to the YAML are left out, and the document redone.
    const plans = templates.map((ref) => edit(ref));
    const excluded = new Set<number>();
    let changed: PodTemplateRef[] = [];
    for (let done = false; !done;) {
      done = true;
      changed = [];
      for (const [i, ref] of templates.entries()) {
        if (excluded.has(i)) continue;
        const operations = plans[i]!;
        if (operations.length === 0) continue;
        try {
          applyPatch(ref.template, operations);
          applyToDocument(doc, ref.path, operations);
          changed.push(ref);
        } catch (e) {
          warn(ref, `left unchanged: ${(e as Error).message}`);
          excluded.add(i);
          doc = compose();
          done = false;
          break;
        }
      }
    }
    out.push(changed.length > 0 ? doc.toString({ lineWidth: 0, indentSeq: indentsSequences(text) }) : text);
    edited.push(...changed);
  }
  return { text: out.join(''), changed: edited };
}
