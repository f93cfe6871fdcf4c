// A RouteSet from the control plane (src/api/route.proto) compiled into the matcher's RouteTable
// (src/core/routes/matcher.ts): each route's spec is parsed and validated with the schema
// `trellis apply` uses (src/core/routes/parse.ts), its regular expressions compiled once, and the
// backends the control plane could not resolve marked so their share gets 500, and the HTTPFaults
// the rules' ExtensionRefs name (src/core/routes/fault.ts) validated and compiled into the rules
// (one the set does not carry leaves its rule answering 500). Never throws: a set
// with any route that does not validate is refused whole with the reason, and the caller keeps
// its last good table. Compiling a table turns on V8's linear-time fallback for regular
// expressions (src/core/routes/regex.ts), once per process.
import type { ApiRouteSetOutput } from '../../api/client.ts';
import {
  compileFault,
  FAULT_API_VERSION,
  validateFault,
  type CompiledFault,
} from '../../core/routes/fault.ts';
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
  const faults = new Map<string, CompiledFault>();
  for (const e of set.extensions) {
    const where = `${e.kind} ${e.namespace}/${e.name}`;
    let spec: unknown;
    try {
      spec = JSON.parse(e.specJson);
    } catch {
      return { ok: false, problem: `${where}: spec is not JSON` };
    }
    const document = {
      apiVersion: FAULT_API_VERSION,
      kind: e.kind,
      metadata: { name: e.name, namespace: e.namespace },
      spec,
    };
    const { fault, issues } = validateFault(document);
    if (fault === null) {
      const issue = issues[0];
      return {
        ok: false,
        problem: `${where}: ${issue?.path.join('.') ?? ''}: ${issue?.message ?? 'invalid'}`,
      };
    }
    faults.set(`${fault.namespace}/${fault.name}`, compileFault(fault));
  }
  const unresolved = new Set(set.unresolvedBackends);
  try {
    enableLinearRegexFallback();
    const table = compileRouteTable(
      routes,
      (namespace, name, port) => !unresolved.has(`${namespace}/${name}:${port}`),
      (namespace, name) => faults.get(`${namespace}/${name}`) ?? null,
    );
    return { ok: true, table };
  } catch (error) {
    return { ok: false, problem: `cannot compile the routes: ${(error as Error).message}` };
  }
}
