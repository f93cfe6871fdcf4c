// The HTTPRoutes of the routes benchmark, written into a trellis pair's state folder the way
// `trellis apply -f` writes them (validated by the same schema, src/core/routes/parse.ts).
//
// - TEN_RULES: ten rules attached to the pair's Service, with varied matches (an exact path,
//   path prefixes, a header, a method, a query parameter), every one with a retry of 503
//   (attempts 2). The load (GET /, no headers) matches only the catch-all `PathPrefix /` rule,
//   which the Gateway API's precedence ranks LAST: the proxy's matcher tests all nine others
//   first, the worst case for a scan in precedence order.
// - STORM: one catch-all rule retrying 503 with attempts 3 (four times the requests if nothing
//   bounded it), for the retry storm.
import { parse } from 'yaml';
import { validateRoute } from '../../src/core/routes/parse.ts';
import { writeRouteFile } from '../../src/control/routes/state-files.ts';

export interface RouteParent {
  readonly name: string;
  readonly namespace: string;
  readonly port: number;
}

const RETRY = '{ codes: [503], attempts: 2 }';

/** The ten rules; the last is the one the load hits. */
export function tenRulesYaml(s: RouteParent): string {
  const backend = `[{ name: ${s.name}, port: ${s.port} }]`;
  const rule = (matches: string) =>
    `    - matches: [${matches}]\n      backendRefs: ${backend}\n      retry: ${RETRY}`;
  return [
    'apiVersion: gateway.networking.k8s.io/v1',
    'kind: HTTPRoute',
    `metadata: { name: bench-ten-rules, namespace: ${s.namespace} }`,
    'spec:',
    `  parentRefs: [{ group: '', kind: Service, name: ${s.name}, port: ${s.port} }]`,
    '  rules:',
    rule('{ path: { type: Exact, value: /healthz } }'),
    rule('{ path: { type: PathPrefix, value: /api/v1/users } }'),
    rule('{ path: { type: PathPrefix, value: /api/v1/orders } }'),
    rule("{ path: { type: PathPrefix, value: /api/v2 }, headers: [{ name: x-canary, value: 'true' }] }"),
    rule('{ path: { type: PathPrefix, value: /static } }'),
    rule('{ path: { type: PathPrefix, value: /api }, method: POST }'),
    rule('{ headers: [{ name: x-tenant, value: blue }] }'),
    rule('{ path: { type: PathPrefix, value: /admin } }'),
    rule('{ queryParams: [{ name: debug, value: "1" }] }'),
    rule('{ path: { type: PathPrefix, value: / } }'),
    '',
  ].join('\n');
}

/** The retry storm's route: everything retried on 503, attempts 3. */
export function stormYaml(s: RouteParent): string {
  return [
    'apiVersion: gateway.networking.k8s.io/v1',
    'kind: HTTPRoute',
    `metadata: { name: bench-storm, namespace: ${s.namespace} }`,
    'spec:',
    `  parentRefs: [{ group: '', kind: Service, name: ${s.name}, port: ${s.port} }]`,
    '  rules:',
    `    - backendRefs: [{ name: ${s.name}, port: ${s.port} }]`,
    '      retry: { codes: [503], attempts: 3 }',
    '',
  ].join('\n');
}

/** Validates one route document and writes it into the state folder; throws with every issue. */
export async function applyRoute(stateDir: string, yaml: string): Promise<void> {
  const { route, issues } = validateRoute(parse(yaml), Date.now());
  if (route === null) {
    throw new Error(
      `bench route is invalid: ${issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`,
    );
  }
  await writeRouteFile(stateDir, route);
}
