// Tests of the injector's mutation (src/control/injector/admission.ts): AdmissionReview v1 in,
// AdmissionReview with a JSONPatch out. By example: opt-in by pod or namespace annotation, the
// skips (hostNetwork, control plane, already injected) and their annotation, native and classic
// sidecars, the init container and its port annotations, the downward API and the projected
// token, malformed reviews. By property (fast-check): for any pod, the patch applies cleanly
// (RFC 6902, applied by the strict applier below) and a second review of the patched pod
// changes nothing.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { review, INJECT_ANNOTATION, SKIPPED_ANNOTATION } from '../../src/control/injector/admission.ts';
import type { InjectorConfig } from '../../src/control/injector/proxy-containers.ts';
import { TEST_INJECTOR_CONFIG } from '../helpers/injector-config.ts';
import { parseInjectorConfig } from '../../src/control/injector/config.ts';
import { stringify } from 'yaml';

const CONFIG: InjectorConfig = TEST_INJECTOR_CONFIG;

type Json = Record<string, unknown>;
interface Pod {
  metadata: { name?: string; annotations?: Record<string, string>; labels?: Record<string, string> };
  spec: {
    hostNetwork?: boolean;
    containers: Json[];
    initContainers?: Json[];
    volumes?: Json[];
    [key: string]: unknown;
  };
}

/** A strict RFC 6902 `add` (the only operation the injector emits): every parent must exist. */
function applyPatch(document: unknown, operations: { op: string; path: string; value: unknown }[]): unknown {
  const root = structuredClone(document);
  for (const { op, path, value } of operations) {
    assert.equal(op, 'add', `unexpected operation ${op}`);
    assert.ok(path.startsWith('/'), `bad path ${path}`);
    const segments = path
      .slice(1)
      .split('/')
      .map((s) => s.replaceAll('~1', '/').replaceAll('~0', '~'));
    const last = segments.pop()!;
    let parent: unknown = root;
    for (const segment of segments) {
      assert.ok(typeof parent === 'object' && parent !== null, `${path}: no parent at ${segment}`);
      const next = (parent as Record<string, unknown>)[segment];
      assert.ok(next !== undefined, `${path}: ${segment} does not exist`);
      parent = next;
    }
    if (Array.isArray(parent)) {
      const index = last === '-' ? parent.length : Number(last);
      assert.ok(/^(-|0|[1-9]\d*)$/.test(last) && index <= parent.length, `${path}: bad index`);
      parent.splice(index, 0, structuredClone(value));
    } else {
      assert.ok(typeof parent === 'object' && parent !== null, `${path}: parent is not a container`);
      (parent as Record<string, unknown>)[last] = structuredClone(value);
    }
  }
  return root;
}

function admissionRequest(pod: unknown, namespace = 'shop'): Json {
  return {
    apiVersion: 'admission.k8s.io/v1',
    kind: 'AdmissionReview',
    request: {
      uid: 'req-1',
      kind: { group: '', version: 'v1', kind: 'Pod' },
      resource: { group: '', version: 'v1', resource: 'pods' },
      namespace,
      operation: 'CREATE',
      object: pod,
    },
  };
}

/** Reviews `pod` and returns the patched pod (the same pod when there is no patch). */
function inject(
  pod: unknown,
  options: { namespace?: string; ns?: Record<string, string>; config?: Partial<InjectorConfig> } = {},
) {
  const answer = review(admissionRequest(pod, options.namespace), options.ns ?? {}, {
    ...CONFIG,
    ...options.config,
  });
  assert.equal(answer.response.uid, 'req-1');
  assert.equal(answer.response.allowed, true);
  const operations =
    answer.response.patch === undefined
      ? []
      : JSON.parse(Buffer.from(answer.response.patch, 'base64').toString());
  if (answer.response.patch !== undefined) assert.equal(answer.response.patchType, 'JSONPatch');
  return { answer, operations, pod: applyPatch(pod, operations) as Pod };
}

const appPod = (annotations?: Record<string, string>): Pod => ({
  metadata: { name: 'web-1', ...(annotations ? { annotations } : {}) },
  spec: {
    serviceAccountName: 'web',
    containers: [{ name: 'app', image: 'web:1', ports: [{ containerPort: 8080 }] }],
  },
});

const byName = (list: Json[] | undefined, name: string) =>
  list?.find((c) => c['name'] === name) as Json | undefined;

test('an enabled pod gets trellis-init, then the proxy as a native sidecar, the token volume and the injected annotation', () => {
  const { pod } = inject(appPod({ [INJECT_ANNOTATION]: 'enabled' }));
  assert.deepEqual(
    pod.spec.initContainers!.map((c) => c['name']),
    ['trellis-init', 'trellis-proxy'],
  );
  assert.deepEqual(
    pod.spec.containers.map((c) => c['name']),
    ['app'],
  );
  assert.equal(pod.metadata.annotations!['trellis.dev/proxy-injected'], 'true');
  const proxy = byName(pod.spec.initContainers, 'trellis-proxy')!;
  assert.equal(proxy['restartPolicy'], 'Always');
  assert.deepEqual((proxy['startupProbe'] as Json)['httpGet'], { path: '/ready', port: 4191 });
  assert.deepEqual(
    (proxy['env'] as Json[]).map((e) => [
      e['name'],
      ((e['valueFrom'] as Json)['fieldRef'] as Json)['fieldPath'],
    ]),
    [
      ['TRELLIS_POD_NAME', 'metadata.name'],
      ['TRELLIS_POD_NAMESPACE', 'metadata.namespace'],
      ['TRELLIS_POD_SERVICE_ACCOUNT', 'spec.serviceAccountName'],
    ],
  );
  const args = proxy['args'] as string[];
  assert.ok(args.includes('--workload=$(TRELLIS_POD_NAME)'));
  assert.ok(args.includes('--identity-token-file=/var/run/secrets/trellis.dev/identity/token'));
  const security = proxy['securityContext'] as Json;
  assert.equal(security['runAsNonRoot'], true);
  assert.equal(security['readOnlyRootFilesystem'], true);
  assert.equal(security['allowPrivilegeEscalation'], false);
  assert.deepEqual(security['capabilities'], { drop: ['ALL'] });
  const token = byName(pod.spec.volumes, 'trellis-identity-token')!;
  assert.deepEqual(token['projected'], {
    sources: [
      { serviceAccountToken: { audience: 'trellis-identity', expirationSeconds: 86400, path: 'token' } },
    ],
  });
  const init = byName(pod.spec.initContainers, 'trellis-init')!;
  assert.deepEqual((init['securityContext'] as Json)['capabilities'], {
    drop: ['ALL'],
    add: ['NET_ADMIN', 'NET_RAW'],
  });
  assert.ok((init['args'] as string[]).includes('--proxy-uid=2102'));
});

test('the namespace annotation enables injection; the pod annotation disabled opts out', () => {
  const ns = { [INJECT_ANNOTATION]: 'enabled' };
  assert.ok(byName(inject(appPod(), { ns }).pod.spec.initContainers, 'trellis-proxy'));
  const out = inject(appPod({ [INJECT_ANNOTATION]: 'disabled' }), { ns });
  assert.deepEqual(out.operations, []);
  assert.deepEqual(inject(appPod()).operations, [], 'no annotation anywhere: no injection');
});

test('the app keeps its own init containers after the proxy, and its volumes', () => {
  const original = appPod({ [INJECT_ANNOTATION]: 'enabled' });
  original.spec.initContainers = [{ name: 'migrate', image: 'db:1' }];
  original.spec.volumes = [{ name: 'data', emptyDir: {} }];
  const { pod } = inject(original);
  assert.deepEqual(
    pod.spec.initContainers!.map((c) => c['name']),
    ['trellis-init', 'trellis-proxy', 'migrate'],
  );
  assert.deepEqual(
    pod.spec.volumes!.map((v) => v['name']),
    ['data', 'trellis-identity-token', 'trellis-init-run'],
  );
});

test('classic sidecar by annotation or install setting; CNI mode leaves trellis-init out', () => {
  const classic = inject(
    appPod({ [INJECT_ANNOTATION]: 'enabled', 'config.trellis.dev/native-sidecar': 'false' }),
  ).pod;
  assert.deepEqual(
    classic.spec.containers.map((c) => c['name']),
    ['trellis-proxy', 'app'],
  );
  assert.equal(byName(classic.spec.containers, 'trellis-proxy')!['restartPolicy'], undefined);
  assert.equal(byName(classic.spec.containers, 'trellis-proxy')!['startupProbe'], undefined);
  assert.deepEqual(
    classic.spec.initContainers!.map((c) => c['name']),
    ['trellis-init'],
  );
  const cni = inject(appPod({ [INJECT_ANNOTATION]: 'enabled' }), {
    config: { cni: true, nativeSidecar: false },
  }).pod;
  assert.equal(cni.spec.initContainers, undefined);
  assert.deepEqual(
    cni.spec.volumes!.map((v) => v['name']),
    ['trellis-identity-token'],
  );
});

test('port and proxy annotations reach trellis init and the proxy', () => {
  const { pod } = inject(
    appPod({
      [INJECT_ANNOTATION]: 'enabled',
      'config.trellis.dev/skip-inbound-ports': '22,9000-9100',
      'config.trellis.dev/skip-outbound-ports': '3306',
      'config.trellis.dev/opaque-ports': '5432',
      'config.trellis.dev/proxy-log-level': 'debug',
      'config.trellis.dev/default-inbound-policy': 'deny',
      'config.trellis.dev/proxy-memory-limit': '256Mi',
    }),
  );
  const init = byName(pod.spec.initContainers, 'trellis-init')!['args'] as string[];
  // The tap listener's port is reached directly too.
  assert.ok(init.includes('--inbound-ports-to-ignore=4190,22,9000-9100'), init.join(' '));
  assert.ok(init.includes('--outbound-ports-to-ignore=3306'));
  const proxy = byName(pod.spec.initContainers, 'trellis-proxy')!;
  const args = proxy['args'] as string[];
  for (const arg of ['--opaque-ports=5432', '--log-level=debug', '--default-policy=deny'])
    assert.ok(args.includes(arg), arg);
  assert.deepEqual(proxy['resources'], {
    requests: { cpu: '100m', memory: '64Mi' },
    limits: { memory: '256Mi' },
  });
});

test('the JIT warm-up annotation reaches the proxy as --jit-warm-up; a bad value is left out', () => {
  const warmUp = (annotations: Record<string, string>) =>
    (
      byName(
        inject(appPod({ [INJECT_ANNOTATION]: 'enabled', ...annotations })).pod.spec.initContainers,
        'trellis-proxy',
      )!['args'] as string[]
    ).filter((a) => a.startsWith('--jit-warm-up'));
  assert.deepEqual(warmUp({}), []);
  assert.deepEqual(warmUp({ 'config.trellis.dev/proxy-jit-warm-up': '0' }), ['--jit-warm-up=0']);
  assert.deepEqual(warmUp({ 'config.trellis.dev/proxy-jit-warm-up': '150' }), ['--jit-warm-up=150']);
  for (const bad of ['-1', 'off', '', '1e3', '1234567', '10 --admin-listen=0.0.0.0:1'])
    assert.deepEqual(warmUp({ 'config.trellis.dev/proxy-jit-warm-up': bad }), [], bad);
});

test("the install's trace collector reaches every proxy with its sample ratio; a pod annotation overrides the ratio, a bad one is ignored", () => {
  const proxyArgs = (annotations: Record<string, string>, config: Partial<InjectorConfig>) =>
    byName(
      inject(appPod({ [INJECT_ANNOTATION]: 'enabled', ...annotations }), { config }).pod.spec.initContainers,
      'trellis-proxy',
    )!['args'] as string[];
  const traced = (args: string[]) => args.filter((a) => a.startsWith('--trace-'));
  // No collector: no tracing flags, whatever the pod says.
  assert.deepEqual(traced(proxyArgs({ 'config.trellis.dev/trace-sample-ratio': '1' }, {})), []);
  const collector = { traceCollector: 'http://collector.tracing:4318', traceSampleRatio: '0.1' };
  assert.deepEqual(traced(proxyArgs({}, collector)), [
    '--trace-collector=http://collector.tracing:4318',
    '--trace-sample-ratio=0.1',
  ]);
  assert.ok(
    proxyArgs({ 'config.trellis.dev/trace-sample-ratio': '1' }, collector).includes('--trace-sample-ratio=1'),
  );
  for (const bad of ['2', '-0.5', 'half', '', '0x1'])
    assert.ok(
      proxyArgs({ 'config.trellis.dev/trace-sample-ratio': bad }, collector).includes(
        '--trace-sample-ratio=0.1',
      ),
      bad,
    );
});

test('an install configuration written before the trace settings means no tracing; a bad ratio names the setting', () => {
  const before = stringify({ ...CONFIG, traceCollector: undefined, traceSampleRatio: undefined });
  const parsed = parseInjectorConfig('--injector-config', 'config.yaml', before);
  assert.equal(parsed.traceCollector, '');
  assert.equal(parsed.traceSampleRatio, '0');
  const bad = stringify({ ...CONFIG, traceSampleRatio: '3' });
  // The line and column of the wrong value, as an editor shows them.
  const lines = bad.split('\n');
  const line = lines.findIndex((l) => l.startsWith('traceSampleRatio:')) + 1;
  const column = lines[line - 1]!.indexOf('"3"') + 1;
  assert.ok(line > 0 && column > 0, bad);
  assert.throws(
    () => parseInjectorConfig('--injector-config', 'config.yaml', bad),
    new RegExp(
      `--injector-config: config.yaml:${line}:${column}: traceSampleRatio: expected a number from 0 to 1`,
    ),
  );
});

test('hostNetwork pods and the control plane are skipped with the reason in an annotation', () => {
  const host = appPod({ [INJECT_ANNOTATION]: 'enabled' });
  host.spec.hostNetwork = true;
  const skipped = inject(host).pod;
  assert.equal(skipped.metadata.annotations![SKIPPED_ANNOTATION], 'hostNetwork');
  assert.equal(skipped.spec.initContainers, undefined);
  const control = inject(appPod(), { namespace: 'trellis', ns: { [INJECT_ANNOTATION]: 'enabled' } }).pod;
  assert.equal(control.metadata.annotations![SKIPPED_ANNOTATION], 'control-plane');
  assert.deepEqual(
    control.spec.containers.map((c) => c['name']),
    ['app'],
  );
});

test("without a namespace in the request, the pod's own counts; a pod without metadata is allowed unchanged", () => {
  const pod = {
    ...appPod({ [INJECT_ANNOTATION]: 'enabled' }),
    metadata: { name: 'c', namespace: 'trellis', annotations: { [INJECT_ANNOTATION]: 'enabled' } },
  };
  const request = admissionRequest(pod);
  delete (request['request'] as Json)['namespace'];
  const answer = review(request, {}, CONFIG);
  const operations = JSON.parse(Buffer.from(answer.response.patch!, 'base64').toString()) as Json[];
  assert.deepEqual(operations, [
    { op: 'add', path: '/metadata/annotations/trellis.dev~1inject-skipped', value: 'control-plane' },
  ]);
  const bare = review(
    admissionRequest({ spec: { containers: [{ name: 'app' }] } }),
    { [INJECT_ANNOTATION]: 'enabled' },
    CONFIG,
  );
  assert.equal(bare.response.patch, undefined);
  assert.match(bare.response.warnings![0]!, /the pod has no metadata/);
});

test('an already injected pod is left exactly as it is', () => {
  const once = inject(appPod({ [INJECT_ANNOTATION]: 'enabled' })).pod;
  assert.deepEqual(inject(once).operations, []);
});

test('malformed reviews are answered, allowing the pod unchanged with a warning', () => {
  for (const body of [
    null,
    'x',
    {},
    { request: {} },
    { request: { uid: 'u', kind: { group: 'apps', kind: 'Deployment' } } },
  ]) {
    const answer = review(body, {}, CONFIG);
    assert.equal(answer.response.allowed, true);
    assert.equal(answer.response.patch, undefined);
    assert.equal(answer.response.warnings?.length, 1);
  }
  const broken = review(
    admissionRequest({
      metadata: { annotations: { [INJECT_ANNOTATION]: 'enabled' } },
      spec: { containers: 'x' },
    }),
    {},
    CONFIG,
  );
  assert.match(broken.response.warnings![0]!, /cannot inject/);
  assert.equal(broken.response.patch, undefined);
});

// Pods with or without annotations, init containers and volumes, some already holding keys the
// injector writes; namespaces with or without the annotation.
const name = fc.stringMatching(/^[a-z][a-z0-9-]{0,8}$/);
const annotationKey = fc.oneof(
  fc.constantFrom(
    INJECT_ANNOTATION,
    SKIPPED_ANNOTATION,
    'config.trellis.dev/native-sidecar',
    'config.trellis.dev/opaque-ports',
    'trellis.dev/proxy-injected',
    'a~b/c',
  ),
  fc.stringMatching(/^[a-z.]{1,6}\/[a-z~-]{1,6}$/),
);
const annotationValue = fc.constantFrom('enabled', 'disabled', 'true', 'false', '', '80,443');
const container = name.map((n) => ({ name: n, image: `${n}:1` }));
const podArbitrary = fc.record(
  {
    metadata: fc.record(
      { name, annotations: fc.dictionary(annotationKey, annotationValue, { maxKeys: 4 }) },
      { requiredKeys: ['name'] },
    ),
    spec: fc.record(
      {
        hostNetwork: fc.boolean(),
        containers: fc.array(container, { minLength: 1, maxLength: 3 }),
        initContainers: fc.array(container, { maxLength: 2 }),
        volumes: fc.array(
          name.map((n) => ({ name: n, emptyDir: {} })),
          { maxLength: 2 },
        ),
      },
      { requiredKeys: ['containers'] },
    ),
  },
  { requiredKeys: ['metadata', 'spec'] },
);

test('property: the patch applies cleanly and a second review changes nothing', () => {
  const seen = { injected: 0, skipped: 0 };
  fc.assert(
    fc.property(
      podArbitrary,
      fc.dictionary(fc.constant(INJECT_ANNOTATION), annotationValue),
      fc.constantFrom('shop', 'trellis'),
      fc.boolean(),
      fc.boolean(),
      (pod, ns, namespace, nativeSidecar, cni) => {
        const options = { namespace, ns, config: { nativeSidecar, cni } };
        const first = inject(pod, options);
        const second = inject(first.pod, options);
        assert.deepEqual(second.operations, [], 'a second review changes nothing');
        const names = [...first.pod.spec.containers, ...(first.pod.spec.initContainers ?? [])].map(
          (c) => c['name'],
        );
        const proxies = names.filter((n) => n === 'trellis-proxy').length;
        assert.ok(proxies <= 1, 'never two proxies');
        if (first.operations.length > 0 && proxies === 1) seen.injected++;
        if (
          first.pod.metadata.annotations?.[SKIPPED_ANNOTATION] !==
          pod.metadata.annotations?.[SKIPPED_ANNOTATION]
        )
          seen.skipped++;
      },
    ),
    { numRuns: 1000 },
  );
  // The generator reaches both outcomes, so the property is about real patches (a bound well
  // below what every seed gives: 500 runs once gave only 15 injections).
  assert.ok(seen.injected > 10 && seen.skipped > 10, JSON.stringify(seen));
});

test("every proxy serves taps over mTLS on port 4190 to the control plane's identity only; trellis init leaves that port alone", () => {
  const { pod } = inject(appPod({ [INJECT_ANNOTATION]: 'enabled' }));
  const proxy = byName(pod.spec.initContainers, 'trellis-proxy')!;
  const args = proxy['args'] as string[];
  assert.ok(args.includes('--tap-listen=0.0.0.0:4190'), args.join(' '));
  assert.ok(
    args.includes('--tap-allowed-identity=spiffe://cluster.local/ns/trellis/sa/trellis-control'),
    args.join(' '),
  );
  assert.deepEqual(
    (proxy['ports'] as { name: string; containerPort: number }[]).find((p) => p.name === 'trellis-tap'),
    { name: 'trellis-tap', containerPort: 4190 },
  );
  const init = byName(pod.spec.initContainers, 'trellis-init')!['args'] as string[];
  assert.ok(init.includes('--inbound-ports-to-ignore=4190'), init.join(' '));
  // The allowed identity follows the install's trust domain and control-plane namespace.
  const other = inject(appPod({ [INJECT_ANNOTATION]: 'enabled' }), {
    config: { trustDomain: 'corp.example', controlPlaneNamespace: 'mesh-system' },
  });
  const otherArgs = byName(other.pod.spec.initContainers, 'trellis-proxy')!['args'] as string[];
  assert.ok(
    otherArgs.includes('--tap-allowed-identity=spiffe://corp.example/ns/mesh-system/sa/trellis-control'),
  );
});
