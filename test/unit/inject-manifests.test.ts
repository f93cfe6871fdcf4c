// Tests of `trellis inject` and `trellis uninject` on manifests (src/cli/inject.ts, uninject.ts,
// manifest-edit.ts): by example (kinds, Lists, JSON, comments and formatting of untouched
// documents, warnings, bad input) and by property (fast-check): documents the edit does not
// change come out byte for byte, injecting twice is injecting once, uninject(inject(x)) is x, and
// the pod template `trellis inject` makes equals the pod the webhook (admission.ts's review, its
// JSONPatch applied) makes of the same pod.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fc from 'fast-check';
import { CST, Parser, parse, parseAllDocuments, stringify } from 'yaml';
import { review, INJECT_ANNOTATION } from '../../src/control/injector/admission.ts';
import { applyPatch } from '../../src/control/injector/patch.ts';
import type { InjectorConfig } from '../../src/control/injector/proxy-containers.ts';
import { TEST_INJECTOR_CONFIG } from '../helpers/injector-config.ts';
import { injectManifests } from '../../src/cli/inject.ts';
import { CLI, NODE } from '../helpers/proxy-process.ts';
import { uninjectManifests } from '../../src/cli/uninject.ts';

const CONFIG: InjectorConfig = TEST_INJECTOR_CONFIG;

type Json = Record<string, unknown>;

function inject(text: string, config: InjectorConfig = CONFIG): { text: string; report: string[] } {
  const report: string[] = [];
  return { text: injectManifests(text, 'test.yaml', config, (line) => report.push(line)), report };
}

function uninject(text: string): { text: string; report: string[] } {
  const report: string[] = [];
  return { text: uninjectManifests(text, 'test.yaml', (line) => report.push(line)), report };
}

/** The source text of each document (the parser's own tokens, as manifest-edit.ts cuts them). */
const documentTexts = (text: string): string[] =>
  [...new Parser().parse(text)].filter((t) => t.type === 'document').map((t) => CST.stringify(t));

const SERVICE = `# the web service
apiVersion: v1
kind: Service   # spaced comment
metadata: {name: web, namespace: shop}
spec:
  ports: [ {port: 80,   targetPort: 8080} ]
`;

const DEPLOYMENT = `apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: shop
spec:
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: app   # the app
        image: web:1
`;

test('a Deployment gets the proxy; the Service before it and the comments between come out byte for byte', () => {
  const source = `${SERVICE}---\n# between\n${DEPLOYMENT}...\n`;
  const { text, report } = inject(source);
  assert.equal(documentTexts(text)[0], documentTexts(source)[0]);
  assert.ok(text.startsWith(SERVICE + '---\n# between\n'));
  assert.ok(text.endsWith('...\n'));
  const deployment = parseAllDocuments(text)[1]!.toJS() as Json;
  const template = (deployment['spec'] as Json)['template'] as Json;
  const spec = template['spec'] as Json;
  assert.deepEqual(
    (spec['initContainers'] as Json[]).map((c) => c['name']),
    ['trellis-init', 'trellis-proxy'],
  );
  assert.deepEqual(
    (spec['containers'] as Json[]).map((c) => c['name']),
    ['app'],
  );
  assert.equal(
    (template['metadata'] as Json as { annotations: Json }).annotations['trellis.dev/proxy-injected'],
    'true',
  );
  // The changed document keeps its comment and kubectl's unindented lists.
  assert.match(text, /# the app/);
  assert.match(text, /\n {6}containers:\n {6}- name: app/);
  assert.deepEqual(report, ['deployment/web (document 2) injected']);
});

test('every workload kind, Lists and JSON are injected; other kinds are not touched', () => {
  const template = {
    metadata: { labels: { app: 'x' } },
    spec: { containers: [{ name: 'app', image: 'x' }] },
  };
  const workloads: [string, string, Json][] = [
    ['apps/v1', 'Deployment', { template }],
    ['apps/v1', 'StatefulSet', { template }],
    ['apps/v1', 'DaemonSet', { template }],
    ['apps/v1', 'ReplicaSet', { template }],
    ['batch/v1', 'Job', { template }],
    ['batch/v1', 'CronJob', { schedule: '* * * * *', jobTemplate: { spec: { template } } }],
  ];
  // Clones: yaml's stringify writes an object met twice as an anchor and an alias.
  const objects = (JSON.parse(JSON.stringify(workloads)) as typeof workloads).map(
    ([apiVersion, kind, spec]) => ({
      apiVersion,
      kind,
      metadata: { name: 'w' },
      spec,
    }),
  );
  const pod = {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name: 'p' },
    spec: structuredClone(template.spec),
  };
  const configMap = { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'c' }, data: { a: 'b' } };
  const list = { apiVersion: 'v1', kind: 'List', items: [...objects, pod, configMap] };
  for (const source of [JSON.stringify(list, null, 2) + '\n', stringify(list)]) {
    const { text, report } = inject(source);
    const items = (parse(text) as { items: Json[] }).items;
    const proxied = (spec: Json) =>
      (spec['initContainers'] as Json[] | undefined)?.some((c) => c['name'] === 'trellis-proxy');
    const specs = [
      ...items.slice(0, 5).map((o) => ((o['spec'] as Json)['template'] as Json)['spec'] as Json),
      (((items[5]!['spec'] as Json)['jobTemplate'] as Json)['spec'] as Json as { template: { spec: Json } })
        .template.spec,
      items[6]!['spec'] as Json,
    ];
    assert.deepEqual(specs.map(proxied), [true, true, true, true, true, true, true]);
    assert.deepEqual(items[7], configMap);
    assert.equal(report.length, 7);
    assert.match(report[5]!, /^cronjob\/w \(document 1\) injected$/);
  }
});

test('skipped and disabled templates, and ones that cannot be injected, pass unchanged with a warning', () => {
  const hostNetwork = `apiVersion: v1\nkind: Pod\nmetadata: {name: h}\nspec:\n  hostNetwork: true\n  containers: [{name: a, image: b}]\n`;
  const disabled = `apiVersion: v1\nkind: Pod\nmetadata:\n  name: d\n  annotations: {${INJECT_ANNOTATION}: disabled}\nspec:\n  containers: [{name: a, image: b}]\n`;
  const control = `apiVersion: v1\nkind: Pod\nmetadata: {name: c, namespace: trellis}\nspec:\n  containers: [{name: a, image: b}]\n`;
  const noTemplate = `apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: broken}\nspec: {replicas: 1}\n`;
  // An alias where the injector writes: the YAML cannot take the patch (the object could).
  const alias = `apiVersion: v1\nkind: Pod\nmetadata: {name: alias}\nx-spec: &s\n  containers: [{name: a, image: b}]\nspec: *s\n`;
  for (const [source, warning] of [
    [hostNetwork, /pod\/h \(document 1\) not injected: hostNetwork/],
    [disabled, /pod\/d \(document 1\) not injected: trellis.dev\/inject is disabled/],
    [control, /pod\/c \(document 1\) not injected: control-plane/],
    [noTemplate, /deployment\/broken \(document 1\) not injected: no pod template at spec\.template/],
    [alias, /pod\/alias \(document 1\) not injected: left unchanged: .*not a mapping or list/],
  ] as const) {
    const { text, report } = inject(source);
    assert.equal(text, source);
    assert.equal(report.length, 1, report.join('\n'));
    assert.match(report[0]!, warning);
    assert.match(report[0]!, /^warning: /);
  }
});

test('input that is not YAML or not Kubernetes objects is an error naming the document and its line', () => {
  const cases: [string, RegExp][] = [
    [`${SERVICE}---\nkind: [unclosed\n`, /^-f: test\.yaml: document 2 \(line 7\): not YAML: /],
    [
      `${SERVICE}---\njust a string\n`,
      /^-f: test\.yaml: document 2 \(line 7\): not a Kubernetes object: expected a mapping with apiVersion and kind$/,
    ],
    [`a: 1\n`, /^-f: test\.yaml: document 1 \(line 1\): not a Kubernetes object/],
    [
      `apiVersion: v1\nkind: List\nitems:\n- 3\n`,
      /document 1 \(line 1\): not a Kubernetes object \(items\.0\)/,
    ],
    [`${SERVICE}---\n\tkey: value\n`, /document 2 \(line 7\): not YAML/],
  ];
  for (const [source, message] of cases) {
    assert.throws(
      () => inject(source),
      (error: Error & { code?: string }) => {
        assert.equal(error.code, 'TRELLIS_ERR_CONFIG');
        assert.match(error.message, message);
        return true;
      },
    );
  }
  // Empty documents and comments alone pass.
  assert.deepEqual(inject('---\n# nothing\n---\n').text, '---\n# nothing\n---\n');
});

test('trellis inject -f - reads stdin; bad input exits 2 with the message and prints nothing', () => {
  const cli = (args: string[], input: string) => spawnSync(NODE, [CLI, ...args], { input, encoding: 'utf8' });
  const ok = cli(['inject', '-f', '-'], DEPLOYMENT);
  assert.equal(ok.status, 0, ok.stderr);
  assert.match(ok.stdout, /name: trellis-proxy/);
  assert.equal(ok.stderr, 'deployment/web (document 1) injected\n');
  const classic = cli(['inject', '-f', '-', '--no-native-sidecar', '--proxy-log-level', 'debug'], DEPLOYMENT);
  const spec = (parse(classic.stdout) as { spec: { template: { spec: { containers: Json[] } } } }).spec
    .template.spec;
  assert.equal(spec.containers[0]!['name'], 'trellis-proxy');
  assert.ok((spec.containers[0]!['args'] as string[]).includes('--log-level=debug'));
  const bad = cli(['inject', '-f', '-'], 'kind: [\n');
  assert.equal(bad.status, 2);
  assert.equal(bad.stdout, '');
  assert.match(bad.stderr, /^trellis: -f: stdin: document 1 \(line 1\): not YAML/);
  const back = cli(['uninject', '-f', '-'], ok.stdout);
  assert.equal(back.status, 0, back.stderr);
  assert.deepEqual(parse(back.stdout), parse(DEPLOYMENT));
  assert.equal(cli(['inject'], '').status, 2);
});

// ---- properties ----

const name = fc.constantFrom('app', 'web', 'sidecar', 'db', 'cache');
const annotationKey = fc.constantFrom(
  'a',
  'team/owner',
  'x~y/z',
  'config.trellis.dev/proxy-log-level',
  'note',
);
const container = fc.record(
  {
    name,
    image: fc.constantFrom('web:1', 'db:2'),
    ports: fc.array(fc.record({ containerPort: fc.integer({ min: 1, max: 65535 }) }), {
      minLength: 1,
      maxLength: 2,
    }),
  },
  { requiredKeys: ['name', 'image'] },
);
const podTemplate = fc.record(
  {
    metadata: fc.record(
      {
        labels: fc.dictionary(fc.constantFrom('app', 'tier'), fc.constantFrom('web', 'db'), { minKeys: 1 }),
        annotations: fc.dictionary(annotationKey, fc.constantFrom('debug', 'v', ''), { minKeys: 1 }),
      },
      { requiredKeys: [] },
    ),
    spec: fc.record(
      {
        serviceAccountName: name,
        containers: fc.uniqueArray(container, { minLength: 1, maxLength: 3, selector: (c) => c.name }),
        initContainers: fc.uniqueArray(container, { minLength: 1, maxLength: 2, selector: (c) => c.name }),
        volumes: fc.array(fc.record({ name: fc.constantFrom('data', 'tmp'), emptyDir: fc.constant({}) }), {
          minLength: 1,
          maxLength: 2,
        }),
      },
      { requiredKeys: ['containers'] },
    ),
  },
  { requiredKeys: ['metadata', 'spec'] },
);
const config = fc
  .record({
    nativeSidecar: fc.boolean(),
    cni: fc.boolean(),
    traceCollector: fc.constantFrom('', 'http://collector.tracing:4318'),
    traceSampleRatio: fc.constantFrom('0', '0.25', '1'),
  })
  .map((c) => ({ ...CONFIG, ...c }));

const KINDS = ['Deployment', 'StatefulSet', 'DaemonSet', 'ReplicaSet', 'Job', 'CronJob', 'Pod'] as const;
type Kind = (typeof KINDS)[number];

function workload(kind: Kind, template: Json): Json {
  const metadata = { name: 'w', namespace: 'shop' };
  if (kind === 'Pod') return { apiVersion: 'v1', kind, metadata, spec: template['spec'] };
  if (kind === 'CronJob')
    return {
      apiVersion: 'batch/v1',
      kind,
      metadata,
      spec: { schedule: '@daily', jobTemplate: { spec: { template } } },
    };
  return { apiVersion: kind === 'Job' ? 'batch/v1' : 'apps/v1', kind, metadata, spec: { template } };
}

/** The pod template of a workload (a Pod: the Pod's metadata and spec). */
function templateOf(object: Json): Json {
  const spec = object['spec'] as Json;
  if (object['kind'] === 'Pod') return { metadata: object['metadata'], spec };
  if (object['kind'] === 'CronJob')
    return ((spec['jobTemplate'] as Json)['spec'] as Json)['template'] as Json;
  return spec['template'] as Json;
}

/** A workload document in one of several styles (kubectl's unindented lists, indented, flow, JSON). */
const workloadText = fc
  .record({
    kind: fc.constantFrom(...KINDS),
    template: podTemplate,
    style: fc.constantFrom('block', 'kubectl', 'json', 'flow'),
  })
  .map(({ kind, template, style }) => {
    const object = workload(kind, template);
    const text =
      style === 'json'
        ? JSON.stringify(object, null, 1) + '\n'
        : stringify(object, {
            indentSeq: style !== 'kubectl',
            collectionStyle: style === 'flow' ? 'flow' : 'any',
          });
    return { object, text };
  });

const otherText = fc.constantFrom(
  SERVICE,
  '# only a comment\napiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: sa\n',
  'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata:\n  x: |\n    line one\n     line two\n',
  '{"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "stringData": {"k": "v"}}\n',
  'apiVersion: v1\r\nkind: Namespace\r\nmetadata:\r\n  name: shop   # crlf\r\n',
);

const stream = fc.array(
  fc.oneof(
    workloadText.map((w) => ({ ...w, workload: true })),
    otherText.map((text) => ({ text, workload: false })),
  ),
  {
    minLength: 1,
    maxLength: 5,
  },
);
const join = (docs: { text: string }[]): string => docs.map((d) => d.text).join('---\n');

test('property: documents that are not workloads come out byte for byte, and injecting twice is injecting once', () => {
  fc.assert(
    fc.property(stream, config, (docs, cfg) => {
      const source = join(docs);
      const once = inject(source, cfg).text;
      const before = documentTexts(source);
      const after = documentTexts(once);
      assert.equal(after.length, before.length);
      docs.forEach((doc, i) => {
        if (!doc.workload) assert.equal(after[i], before[i]);
      });
      assert.equal(inject(once, cfg).text, once);
    }),
    { numRuns: 300 },
  );
});

test('property: uninject(inject(x)) is x', () => {
  fc.assert(
    fc.property(stream, config, (docs, cfg) => {
      const source = join(docs);
      const back = uninject(inject(source, cfg).text).text;
      // Exactly: the generated lists and annotations are never empty, and an injection that
      // created one (initContainers, volumes, annotations) has it removed whole.
      assert.deepEqual(
        parseAllDocuments(back).map((d) => d.toJS()),
        parseAllDocuments(source).map((d) => d.toJS()),
      );
      // Nothing left to take out: uninject of x is x, byte for byte.
      assert.equal(uninject(source).text, source);
    }),
    { numRuns: 300 },
  );
});

test('property: the pod trellis inject makes is the pod the webhook makes', () => {
  fc.assert(
    fc.property(fc.constantFrom(...KINDS), podTemplate, config, (kind, template, cfg) => {
      const object = workload(kind, template);
      const cli = templateOf(parse(inject(stringify(object), cfg).text) as Json);
      // The pod a controller makes of the template (a Pod: the Pod itself).
      const pod = structuredClone(templateOf(object));
      const answer = review(
        {
          apiVersion: 'admission.k8s.io/v1',
          kind: 'AdmissionReview',
          request: {
            uid: 'u',
            kind: { group: '', version: 'v1', kind: 'Pod' },
            namespace: 'shop',
            object: pod,
          },
        },
        { [INJECT_ANNOTATION]: 'enabled' },
        cfg,
      );
      assert.equal(answer.response.patchType, 'JSONPatch');
      const operations = JSON.parse(Buffer.from(answer.response.patch!, 'base64').toString());
      assert.deepEqual(cli, applyPatch(pod, operations));
    }),
    { numRuns: 300 },
  );
});
