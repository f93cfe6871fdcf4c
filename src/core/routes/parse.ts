// One route document (a parsed YAML or JSON object) validated into a RouteResource, with every
// problem as a field path and a message; the control plane (src/control/resources.ts) and the
// proxy (src/proxy/route/) call the same function.
import * as v from 'valibot';
import { grpcRouteSchema, httpRouteSchema, type RouteResource } from './schema.ts';
import { annotationFieldIssues, trafficAnnotations } from './service-annotations.ts';

export const ROUTE_KINDS = ['HTTPRoute', 'GRPCRoute'] as const;

export interface RouteIssue {
  readonly path: readonly (string | number)[];
  readonly message: string;
}

/** valibot's issues as field paths and messages (what `trellis apply` prints with the line). */
export function schemaIssues(issues: readonly v.BaseIssue<unknown>[]): RouteIssue[] {
  return issues.map((issue) => ({
    path: issue.path?.map((item) => item.key as string | number) ?? [],
    message: issue.message,
  }));
}

/** The route, or null with every issue found. `createdMs` is used when metadata.creationTimestamp is absent. */
export function validateRoute(
  raw: unknown,
  createdMs = 0,
): { route: RouteResource | null; issues: RouteIssue[] } {
  const kind = (raw as { kind?: unknown } | null)?.kind;
  const schema = kind === 'GRPCRoute' ? grpcRouteSchema : httpRouteSchema;
  const result = v.safeParse(schema, raw);
  if (!result.success) return { route: null, issues: schemaIssues(result.issues) };
  const { metadata, spec } = result.output;
  const stamp = metadata.creationTimestamp === undefined ? createdMs : Date.parse(metadata.creationTimestamp);
  const annotations = trafficAnnotations(metadata.annotations);
  const annotationIssues = annotationFieldIssues(annotations);
  if (annotationIssues.length > 0) return { route: null, issues: annotationIssues };
  const base = {
    namespace: metadata.namespace,
    name: metadata.name,
    createdMs: stamp,
    ...(Object.keys(annotations).length > 0 ? { annotations } : {}),
  };
  const route: RouteResource =
    result.output.kind === 'GRPCRoute'
      ? { kind: 'GRPCRoute', ...base, spec: result.output.spec }
      : { kind: 'HTTPRoute', ...base, spec: spec as Extract<RouteResource, { kind: 'HTTPRoute' }>['spec'] };
  return { route, issues: [] };
}

/** The route as a Kubernetes-shaped document (what a state file holds and what the API carries). */
export function routeDocument(route: RouteResource): Record<string, unknown> {
  return {
    apiVersion: 'gateway.networking.k8s.io/v1',
    kind: route.kind,
    metadata: {
      name: route.name,
      namespace: route.namespace,
      creationTimestamp: new Date(route.createdMs).toISOString(),
      ...(route.annotations === undefined ? {} : { annotations: route.annotations }),
    },
    spec: route.spec,
  };
}
