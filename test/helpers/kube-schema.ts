// Kubernetes objects checked against the Kubernetes OpenAPI schemas (of the release kubernetes-models 5 carries), through
// kubernetes-models' compiled validators: field types, required fields, enums and formats (a port
// that is a string, a container without a name, a Deployment without its selector). The models do
// not forbid unknown fields (neither does the API server's schema without strict validation), so
// the tests that print manifests also read them back through the real kubectl.
//
// Kinds of API groups the models do not cover (Trellis's and the Gateway API's custom resources)
// are reported as not checked, so that a test decides what to do with them instead of passing
// over them silently.

type Json = Record<string, unknown>;

interface Model {
  validate(): void;
}

type ModelClass = new (data: Json) => Model;

/** The kubernetes-models module of an apiVersion and kind ("apps/v1" Deployment -> apps/v1/Deployment). */
function modulePath(apiVersion: string, kind: string): string {
  return `kubernetes-models/${apiVersion}/${kind}`;
}

const loaded = new Map<string, ModelClass | null>();

async function modelOf(apiVersion: string, kind: string): Promise<ModelClass | null> {
  const path = modulePath(apiVersion, kind);
  if (loaded.has(path)) return loaded.get(path)!;
  let model: ModelClass | null = null;
  try {
    const mod = (await import(path)) as Record<string, unknown>;
    const exported = mod[kind];
    if (typeof exported === 'function') model = exported as ModelClass;
  } catch (err) {
    const code = (err as { code?: string }).code;
    if (code !== 'ERR_PACKAGE_PATH_NOT_EXPORTED' && code !== 'ERR_MODULE_NOT_FOUND') throw err;
  }
  loaded.set(path, model);
  return model;
}

export interface SchemaVerdict {
  /** "Deployment/web" (namespace left out). */
  readonly object: string;
  /** False when no schema of the models covers its apiVersion and kind. */
  readonly checked: boolean;
  /** What the schema refused ("data/spec/selector must have required property ..."); empty when valid. */
  readonly problems: readonly string[];
}

/** Validates one object (a List's items each) against its kind's schema. */
export async function validateKubeObject(object: Json): Promise<SchemaVerdict[]> {
  const apiVersion = String(object['apiVersion'] ?? '');
  const kind = String(object['kind'] ?? '');
  if (kind === 'List' && apiVersion === 'v1') {
    const verdicts: SchemaVerdict[] = [];
    for (const item of (object['items'] as Json[] | undefined) ?? [])
      verdicts.push(...(await validateKubeObject(item)));
    return verdicts;
  }
  const name = String((object['metadata'] as Json | undefined)?.['name'] ?? '');
  const label = `${kind}/${name}`;
  const Model = await modelOf(apiVersion, kind);
  if (Model === null) return [{ object: label, checked: false, problems: [] }];
  try {
    new Model(structuredClone(object)).validate();
    return [{ object: label, checked: true, problems: [] }];
  } catch (err) {
    return [{ object: label, checked: true, problems: [(err as Error).message] }];
  }
}

/** Validates every object; the verdicts in order. */
export async function validateKubeObjects(objects: readonly Json[]): Promise<SchemaVerdict[]> {
  const verdicts: SchemaVerdict[] = [];
  for (const object of objects) verdicts.push(...(await validateKubeObject(object)));
  return verdicts;
}
