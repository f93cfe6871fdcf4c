// A RouteSet from the control plane (src/api/route.proto) compiled into the matcher's RouteTable
// (src/core/routes/matcher.ts): each route's spec is parsed and validated with the schema
// `trellis apply` uses (src/core/routes/parse.ts), its regular expressions compiled once, and the
// backends the control plane could not resolve marked so their share gets 500. Never throws: a set
// with any route that does not validate is refused whole with the reason, and the caller keeps
// its last good table. Compiling a table turns on V8's linear-time fallback for regular
// expressions (src/core/routes/regex.ts), once per process.
import type { ApiRouteSetOutput } from '../../api/client.ts';
import { compileRouteTable, type RouteTable } from '../../core/routes/matcher.ts';
import { validateRoute } from '../../core/routes/parse.ts';
import { enableLinearRegexFallback } from '../../core/routes/regex.ts';
import type { RouteResource } from '../../core/routes/schema.ts';

export type CompiledRouteSet =
  { readonly ok: true; readonly table: RouteTable } | { readonly ok: false; readonly problem: string };

export function compileRouteSet(set: ApiRouteSetOutput): CompiledRouteSet {
  const routes: RouteResource[] = [];
  for (const r of set.routes) {
    const where = `${r.kind} ${r.namespace}/${r.name}`;
    let spec: unknown;
    try {
      spec = JSON.parse(r.specJson);
    } catch {
      return { ok: false, problem: `${where}: spec is not JSON` };
    }
    const document = {
      apiVersion: 'gateway.networking.k8s.io/v1',
      kind: r.kind,
      metadata: { name: r.name, namespace: r.namespace },
      spec,
    };
    const { route, issues } = validateRoute(document, Number(r.createdMs));
    if (route === null) {
      const issue = issues[0];
      return {
        ok: false,
        problem: `${where}: ${issue?.path.join('.') ?? ''}: ${issue?.message ?? 'invalid'}`,
      };
    }
    routes.push(route);
  }
  const unresolved = new Set(set.unresolvedBackends);
  try {
    enableLinearRegexFallback();
    const table = compileRouteTable(
      routes,
      (namespace, name, port) => !unresolved.has(`${namespace}/${name}:${port}`),
    );
    return { ok: true, table };
  } catch (error) {
    return { ok: false, problem: `cannot compile the routes: ${(error as Error).message}` };
  }
}
