// Test helpers for the route model (src/core/routes/): routes from inline YAML, validated by the
// real schema, and requests for the matcher.
import { parse } from 'yaml';
import { validateRoute } from '../../src/core/routes/parse.ts';
import type { RouteResource } from '../../src/core/routes/schema.ts';
import type { RouteRequest } from '../../src/core/routes/matcher.ts';

/** The routes of a multi-document YAML text; throws with the issues when one is invalid. */
export function routesFromYaml(text: string, createdMs = 0): RouteResource[] {
  return text
    .split(/^---$/m)
    .filter((doc) => doc.trim() !== '')
    .map((doc) => {
      const { route, issues } = validateRoute(parse(doc), createdMs);
      if (route === null) throw new Error(issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('\n'));
      return route;
    });
}

/** A request from "PATH?QUERY" with lower-cased header names. */
export function request(target: string, headers: Record<string, string> = {}, method = 'GET'): RouteRequest {
  const q = target.indexOf('?');
  const lower = Object.fromEntries(Object.entries(headers).map(([k, val]) => [k.toLowerCase(), val]));
  return {
    method,
    path: q === -1 ? target : target.slice(0, q),
    query: q === -1 ? '' : target.slice(q + 1),
    headers: lower,
    grpc: false,
  };
}
