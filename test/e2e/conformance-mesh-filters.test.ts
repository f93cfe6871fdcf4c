// The Gateway API's mesh conformance tests on one machine, part 2: RequestRedirect (host, status,
// 303/307/308, path, port, scheme), RequestHeaderModifier on the rule and on the backend, and
// URLRewrite. See conformance-mesh.test.ts for how the suite is translated. Redirect cases check
// the Location as the suite's http.go does for gateways (host, port, scheme, path; the mesh echo
// client upstream compares only the status).
import { after, before, test } from 'node:test';
import {
  expectCase,
  expectRedirect,
  MESH_NS,
  startConformanceMesh,
  type ConformanceMesh,
  type Expected,
} from '../helpers/conformance-mesh.ts';

let mesh: ConformanceMesh;
before(async () => {
  mesh = await startConformanceMesh();
});
after(() => mesh.close());

/** An HTTPRoute named `name` on port 80 of Service echo with `rules` (YAML, indented by two). */
function echoRoute(name: string, rules: string): string {
  return `
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: ${name}, namespace: ${MESH_NS} }
spec:
  parentRefs: [{ group: "", kind: Service, name: echo, port: 80 }]
  rules:
${rules}`;
}

test('MeshHTTPRouteRedirectHostAndStatus', async () => {
  const yaml = echoRoute(
    'mesh-redirect-host-and-status',
    `
  - matches: [{ path: { type: PathPrefix, value: /hostname-redirect } }]
    filters: [{ type: RequestRedirect, requestRedirect: { hostname: example.org } }]
  - matches: [{ path: { type: PathPrefix, value: /host-and-status } }]
    filters: [{ type: RequestRedirect, requestRedirect: { statusCode: 301, hostname: example.org } }]
`,
  );
  await mesh.withRoutes(yaml, async () => {
    const { outbound } = await mesh.client();
    await expectRedirect(outbound, 'echo', '/hostname-redirect', { status: 302, host: 'example.org' });
    await expectRedirect(outbound, 'echo', '/host-and-status', { status: 301, host: 'example.org' });
  });
});

for (const [status, prefix] of [
  [303, '/redirect'],
  [307, '/temporary'],
  [308, '/permanent'],
] as const) {
  test(`MeshHTTPRoute${status}Redirect`, async () => {
    const yaml = echoRoute(
      `mesh-${status}-redirect`,
      `
  - matches: [{ path: { type: PathPrefix, value: ${prefix} } }]
    filters: [{ type: RequestRedirect, requestRedirect: { statusCode: ${status} } }]
`,
    );
    await mesh.withRoutes(yaml, async () => {
      const { outbound } = await mesh.client();
      await expectRedirect(outbound, 'echo', prefix, { status, path: prefix });
    });
  });
}

test('MeshHTTPRouteRedirectPath', async () => {
  const yaml = echoRoute(
    'mesh-redirect-path',
    `
  - matches: [{ path: { type: PathPrefix, value: /original-prefix } }]
    filters:
    - type: RequestRedirect
      requestRedirect: { path: { type: ReplacePrefixMatch, replacePrefixMatch: /replacement-prefix } }
  - matches: [{ path: { type: PathPrefix, value: /full } }]
    filters:
    - type: RequestRedirect
      requestRedirect: { path: { type: ReplaceFullPath, replaceFullPath: /full-path-replacement } }
  - matches: [{ path: { type: PathPrefix, value: /path-and-host } }]
    filters:
    - type: RequestRedirect
      requestRedirect:
        hostname: example.org
        path: { type: ReplacePrefixMatch, replacePrefixMatch: /replacement-prefix }
  - matches: [{ path: { type: PathPrefix, value: /path-and-status } }]
    filters:
    - type: RequestRedirect
      requestRedirect:
        path: { type: ReplacePrefixMatch, replacePrefixMatch: /replacement-prefix }
        statusCode: 301
  - matches: [{ path: { type: PathPrefix, value: /full-path-and-host } }]
    filters:
    - type: RequestRedirect
      requestRedirect:
        hostname: example.org
        path: { type: ReplaceFullPath, replaceFullPath: /replacement-full }
  - matches: [{ path: { type: PathPrefix, value: /full-path-and-status } }]
    filters:
    - type: RequestRedirect
      requestRedirect:
        path: { type: ReplaceFullPath, replaceFullPath: /replacement-full }
        statusCode: 301
`,
  );
  await mesh.withRoutes(yaml, async () => {
    const { outbound } = await mesh.client();
    await expectRedirect(outbound, 'echo', '/original-prefix/lemon', {
      status: 302,
      path: '/replacement-prefix/lemon',
    });
    await expectRedirect(outbound, 'echo', '/full/path/original', {
      status: 302,
      path: '/full-path-replacement',
    });
    await expectRedirect(outbound, 'echo', '/path-and-host', {
      status: 302,
      host: 'example.org',
      path: '/replacement-prefix',
    });
    await expectRedirect(outbound, 'echo', '/path-and-status', { status: 301, path: '/replacement-prefix' });
    await expectRedirect(outbound, 'echo', '/full-path-and-host', {
      status: 302,
      host: 'example.org',
      path: '/replacement-full',
    });
    await expectRedirect(outbound, 'echo', '/full-path-and-status', {
      status: 301,
      path: '/replacement-full',
    });
  });
});

test('MeshHTTPRouteRedirectPort', async () => {
  const yaml = echoRoute(
    'mesh-redirect-port',
    `
  - matches: [{ path: { type: PathPrefix, value: /port } }]
    filters: [{ type: RequestRedirect, requestRedirect: { port: 8083 } }]
  - matches: [{ path: { type: PathPrefix, value: /port-and-host } }]
    filters: [{ type: RequestRedirect, requestRedirect: { hostname: example.org, port: 8083 } }]
  - matches: [{ path: { type: PathPrefix, value: /port-and-status } }]
    filters: [{ type: RequestRedirect, requestRedirect: { port: 8083, statusCode: 301 } }]
  - matches: [{ path: { type: PathPrefix, value: /port-and-host-and-status } }]
    filters: [{ type: RequestRedirect, requestRedirect: { port: 8083, hostname: example.org, statusCode: 302 } }]
`,
  );
  await mesh.withRoutes(yaml, async () => {
    const { outbound } = await mesh.client();
    await expectRedirect(outbound, 'echo', '/port', { status: 302, port: '8083' });
    await expectRedirect(outbound, 'echo', '/port-and-host', {
      status: 302,
      host: 'example.org',
      port: '8083',
    });
    await expectRedirect(outbound, 'echo', '/port-and-status', { status: 301, port: '8083' });
    await expectRedirect(outbound, 'echo', '/port-and-host-and-status', {
      status: 302,
      host: 'example.org',
      port: '8083',
    });
  });
});

test('MeshHTTPRouteSchemeRedirect', async () => {
  const yaml = echoRoute(
    'mesh-redirect-scheme',
    `
  - matches: [{ path: { type: PathPrefix, value: /scheme } }]
    filters: [{ type: RequestRedirect, requestRedirect: { scheme: "https" } }]
  - matches: [{ path: { type: PathPrefix, value: /scheme-and-host } }]
    filters: [{ type: RequestRedirect, requestRedirect: { hostname: example.org, scheme: "https" } }]
  - matches: [{ path: { type: PathPrefix, value: /scheme-and-status } }]
    filters: [{ type: RequestRedirect, requestRedirect: { scheme: "https", statusCode: 301 } }]
  - matches: [{ path: { type: PathPrefix, value: /scheme-and-host-and-status } }]
    filters: [{ type: RequestRedirect, requestRedirect: { scheme: "https", statusCode: 302, hostname: example.org } }]
`,
  );
  await mesh.withRoutes(yaml, async () => {
    const { outbound } = await mesh.client();
    await expectRedirect(outbound, 'echo', '/scheme', { status: 302, scheme: 'https' });
    await expectRedirect(outbound, 'echo', '/scheme-and-host', {
      status: 302,
      host: 'example.org',
      scheme: 'https',
    });
    await expectRedirect(outbound, 'echo', '/scheme-and-status', { status: 301, scheme: 'https' });
    await expectRedirect(outbound, 'echo', '/scheme-and-host-and-status', {
      status: 302,
      host: 'example.org',
      scheme: 'https',
    });
  });
});

/** The cases of httproute-request-header-modifier.go: [path, request headers, what echo-v1 must receive]. */
const HEADER_CASES: [string, Record<string, string>, NonNullable<Expected['request']>][] = [
  [
    '/set',
    { 'Some-Other-Header': 'val' },
    { path: '/set', headers: { 'Some-Other-Header': 'val', 'X-Header-Set': 'set-overwrites-values' } },
  ],
  [
    '/set',
    { 'Some-Other-Header': 'val', 'X-Header-Set': 'some-other-value' },
    { path: '/set', headers: { 'Some-Other-Header': 'val', 'X-Header-Set': 'set-overwrites-values' } },
  ],
  [
    '/add',
    { 'Some-Other-Header': 'val' },
    { path: '/add', headers: { 'Some-Other-Header': 'val', 'X-Header-Add': 'add-appends-values' } },
  ],
  [
    '/add',
    { 'Some-Other-Header': 'val', 'X-Header-Add': 'some-other-value' },
    {
      path: '/add',
      headers: { 'Some-Other-Header': 'val', 'X-Header-Add': 'some-other-value,add-appends-values' },
    },
  ],
  ['/remove', { 'X-Header-Remove': 'val' }, { path: '/remove', absentHeaders: ['X-Header-Remove'] }],
  [
    '/multiple',
    {
      'X-Header-Set-2': 'set-val-2',
      'X-Header-Add-2': 'add-val-2',
      'X-Header-Remove-2': 'remove-val-2',
      'Another-Header': 'another-header-val',
    },
    {
      path: '/multiple',
      headers: {
        'X-Header-Set-1': 'header-set-1',
        'X-Header-Set-2': 'header-set-2',
        'X-Header-Add-1': 'header-add-1',
        'X-Header-Add-2': 'add-val-2,header-add-2',
        'X-Header-Add-3': 'header-add-3',
        'Another-Header': 'another-header-val',
      },
      absentHeaders: ['X-Header-Remove-1', 'X-Header-Remove-2'],
    },
  ],
  [
    '/case-insensitivity',
    {
      'x-header-set': 'original-val-set',
      'x-header-add': 'original-val-add',
      'x-header-remove': 'original-val-remove',
      'Another-Header': 'another-header-val',
    },
    {
      path: '/case-insensitivity',
      headers: {
        'X-Header-Set': 'header-set',
        'X-Header-Add': 'original-val-add,header-add',
        'Another-Header': 'another-header-val',
      },
      absentHeaders: ['x-header-remove', 'X-Header-Remove'],
    },
  ],
];

/** The five modifiers of both header-modifier routes, by the path prefix they are for. */
const HEADER_MODIFIERS: [string, string][] = [
  ['/set', '{ set: [{ name: X-Header-Set, value: set-overwrites-values }] }'],
  ['/add', '{ add: [{ name: X-Header-Add, value: add-appends-values }] }'],
  ['/remove', '{ remove: [X-Header-Remove] }'],
  [
    '/multiple',
    '{ set: [{ name: X-Header-Set-1, value: header-set-1 }, { name: X-Header-Set-2, value: header-set-2 }], ' +
      'add: [{ name: X-Header-Add-1, value: header-add-1 }, { name: X-Header-Add-2, value: header-add-2 }, ' +
      '{ name: X-Header-Add-3, value: header-add-3 }], remove: [X-Header-Remove-1, X-Header-Remove-2] }',
  ],
  [
    '/case-insensitivity',
    '{ set: [{ name: X-Header-Set, value: header-set }], add: [{ name: X-Header-Add, value: header-add }], ' +
      'remove: [X-Header-Remove] }',
  ],
];

async function expectHeaderCases(): Promise<void> {
  const { outbound } = await mesh.client();
  for (const [path, headers, request] of HEADER_CASES)
    await expectCase(outbound, 'echo', path, { backend: 'echo-v1', request }, headers);
}

test('MeshHTTPRouteRequestHeaderModifier', async () => {
  const rules = HEADER_MODIFIERS.map(
    ([prefix, modifier]) => `
  - matches: [{ path: { type: PathPrefix, value: ${prefix} } }]
    filters:
    - type: RequestHeaderModifier
      requestHeaderModifier: ${modifier}
    backendRefs: [{ name: echo-v1, port: 8080 }]`,
  ).join('');
  await mesh.withRoutes(echoRoute('mesh-request-header-modifier', rules), expectHeaderCases);
});

test('MeshHTTPRouteBackendRequestHeaderModifier', async () => {
  const rules = HEADER_MODIFIERS.map(
    ([prefix, modifier]) => `
  - matches: [{ path: { type: PathPrefix, value: ${prefix} } }]
    backendRefs:
    - name: echo-v1
      port: 8080
      filters:
      - type: RequestHeaderModifier
        requestHeaderModifier: ${modifier}`,
  ).join('');
  await mesh.withRoutes(echoRoute('mesh-request-header-modifier', rules), expectHeaderCases);
});

test('MeshHTTPRouteRewritePath', async () => {
  const modifyHeaders = `
    - type: RequestHeaderModifier
      requestHeaderModifier:
        set: [{ name: X-Header-Set, value: set-overwrites-values }]
        add: [{ name: X-Header-Add, value: header-val-1 }, { name: X-Header-Add-Append, value: header-val-2 }]
        remove: [X-Header-Remove]`;
  const yaml = echoRoute(
    'mesh-rewrite-path',
    `
  - matches: [{ path: { type: PathPrefix, value: /prefix/one } }]
    filters: [{ type: URLRewrite, urlRewrite: { path: { type: ReplacePrefixMatch, replacePrefixMatch: /one } } }]
    backendRefs: [{ name: echo-v1, port: 80 }]
  - matches: [{ path: { type: PathPrefix, value: /strip-prefix } }]
    filters: [{ type: URLRewrite, urlRewrite: { path: { type: ReplacePrefixMatch, replacePrefixMatch: / } } }]
    backendRefs: [{ name: echo-v1, port: 80 }]
  - matches: [{ path: { type: PathPrefix, value: /full/one } }]
    filters: [{ type: URLRewrite, urlRewrite: { path: { type: ReplaceFullPath, replaceFullPath: /one } } }]
    backendRefs: [{ name: echo-v1, port: 80 }]
  - matches: [{ path: { type: PathPrefix, value: /full/rewrite-path-and-modify-headers } }]
    filters:
    - type: URLRewrite
      urlRewrite: { path: { type: ReplaceFullPath, replaceFullPath: /test } }${modifyHeaders}
    backendRefs: [{ name: echo-v1, port: 80 }]
  - matches: [{ path: { type: PathPrefix, value: /prefix/rewrite-path-and-modify-headers } }]
    filters:
    - type: URLRewrite
      urlRewrite: { path: { type: ReplacePrefixMatch, replacePrefixMatch: /prefix } }${modifyHeaders}
    backendRefs: [{ name: echo-v1, port: 80 }]
`,
  );
  const sentHeaders = {
    'X-Header-Remove': 'remove-val',
    'X-Header-Add-Append': 'append-val-1',
    'X-Header-Set': 'set-val',
  };
  const modified = {
    'X-Header-Add': 'header-val-1',
    'X-Header-Add-Append': 'append-val-1,header-val-2',
    'X-Header-Set': 'set-overwrites-values',
  };
  await mesh.withRoutes(yaml, async () => {
    const { outbound } = await mesh.client();
    const rewritten = (path: string): Expected => ({ backend: 'echo-v1', request: { path } });
    await expectCase(outbound, 'echo', '/prefix/one/two', rewritten('/one/two'));
    await expectCase(outbound, 'echo', '/strip-prefix/three', rewritten('/three'));
    await expectCase(outbound, 'echo', '/strip-prefix', rewritten('/'));
    await expectCase(outbound, 'echo', '/full/one/two', rewritten('/one'));
    await expectCase(
      outbound,
      'echo',
      '/full/rewrite-path-and-modify-headers/test',
      {
        backend: 'echo-v1',
        request: { path: '/test', headers: modified, absentHeaders: ['X-Header-Remove'] },
      },
      sentHeaders,
    );
    await expectCase(
      outbound,
      'echo',
      '/prefix/rewrite-path-and-modify-headers/one',
      {
        backend: 'echo-v1',
        request: { path: '/prefix/one', headers: modified, absentHeaders: ['X-Header-Remove'] },
      },
      sentHeaders,
    );
  });
});
