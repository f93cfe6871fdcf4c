// valibot pieces shared by the HTTPRoute and GRPCRoute schemas (schema.ts, schema-filters.ts),
// with the Gateway API's own limits (apis/v1/shared_types.go, httproute_types.go): names,
// header names and values, hostnames, durations, regular expressions, references.
import * as v from 'valibot';
import { dnsLabel, objectIssue, stringMap } from '../schema.ts';
import { parseGatewayDuration } from './duration.ts';
import { regexProblem } from './regex.ts';

export const GATEWAY_API_VERSION = 'gateway.networking.k8s.io/v1';

export { objectIssue, stringMap };

const text = v.string('expected a string');

/** At most `max` items (the CRD's MaxItems). */
export const listOf = <T extends v.GenericSchema>(item: T, max: number) =>
  v.pipe(v.array(item, 'expected a list'), v.maxLength(max, `at most ${max} items`));

/** A Kubernetes object name (DNS subdomain, ObjectName). */
export const objectName = v.pipe(
  text,
  v.regex(/^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/, 'expected a name (a-z, 0-9, -, .; at most 253)'),
);

/** SectionName: a rule's or a parent's section name. */
export const sectionName = v.pipe(
  text,
  v.regex(
    /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/,
    'expected a section name (a-z, 0-9, -, .)',
  ),
  v.maxLength(253, 'at most 253 characters'),
);

export const group = v.pipe(
  text,
  v.regex(/^$|^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/, 'expected an API group'),
  v.maxLength(253, 'at most 253 characters'),
);

export const kind = v.pipe(
  text,
  v.regex(/^[a-zA-Z]([-a-zA-Z0-9]*[a-zA-Z0-9])?$/, 'expected a kind such as Service'),
  v.maxLength(63, 'at most 63 characters'),
);

export const namespaceName = dnsLabel;

export const portNumber = v.pipe(
  v.number('expected a port 1..65535'),
  v.integer('expected a port 1..65535'),
  v.minValue(1, 'expected a port 1..65535'),
  v.maxValue(65535, 'expected a port 1..65535'),
);

/** HeaderName: an RFC 7230 token (header and query parameter names). */
export const headerName = v.pipe(
  text,
  v.regex(/^[A-Za-z0-9!#$%&'*+\-.^_`|~]+$/, 'expected a header name (an RFC 7230 token)'),
  v.maxLength(256, 'at most 256 characters'),
);

/** A header value (1..4096, printable ASCII with single inner spaces or tabs, as the experimental CRD checks). */
export const headerValue = v.pipe(
  text,
  v.minLength(1, 'expected a non-empty value'),
  v.maxLength(4096, 'at most 4096 characters'),
  v.regex(/^[!-~]+([\t ]?[!-~]+)*$/, 'expected printable ASCII without leading, trailing or double spaces'),
);

/** PreciseHostname: a lower-case DNS name, no wildcard. */
export const preciseHostname = v.pipe(
  text,
  v.regex(
    /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/,
    'expected a lower-case host name',
  ),
  v.maxLength(253, 'at most 253 characters'),
);

/** Hostname: a lower-case DNS name, optionally starting with "*.". */
export const hostname = v.pipe(
  text,
  v.regex(
    /^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/,
    'expected a lower-case host name, optionally starting with "*."',
  ),
  v.maxLength(253, 'at most 253 characters'),
);

/** A Gateway API duration ("10s", "1m30s", "250ms"; GEP-2257), kept as written. */
export const duration = v.pipe(
  // A number (`request: 10`) is the likeliest slip: the message says what a duration looks like.
  v.string(
    (issue) =>
      `expected a duration such as 10s, 1m30s or 250ms, a string (quoted in YAML if need be), got ${JSON.stringify(issue.input)}`,
  ),
  v.check(
    (value) => parseGatewayDuration(value) !== null,
    (issue) =>
      `expected a duration such as 10s, 1m30s or 250ms (1-4 parts of up to 5 digits and h, m, s or ms), got ${JSON.stringify(issue.input)}`,
  ),
);

/** A regular expression routes accept (regex.ts says which and why). */
export const routeRegex = (max: number) =>
  v.pipe(
    text,
    v.maxLength(max, `at most ${max} characters`),
    v.check(
      (value) => regexProblem(value) === null,
      (issue) => `${regexProblem(issue.input as string) ?? 'invalid'}`,
    ),
  );

export const metadataSchema = v.strictObject(
  {
    name: objectName,
    namespace: v.optional(namespaceName, 'default'),
    labels: v.optional(stringMap),
    annotations: v.optional(stringMap),
    creationTimestamp: v.optional(
      v.pipe(
        text,
        v.check((value) => Number.isFinite(Date.parse(value)), 'expected an RFC 3339 time'),
      ),
    ),
  },
  objectIssue,
);

/** ParentReference; a mesh route's parent is a Service: group "" and kind Service. */
export const parentRefSchema = v.strictObject(
  {
    group: v.optional(group, 'gateway.networking.k8s.io'),
    kind: v.optional(kind, 'Gateway'),
    namespace: v.optional(namespaceName),
    name: objectName,
    sectionName: v.optional(sectionName),
    port: v.optional(portNumber),
  },
  objectIssue,
);

/** BackendObjectReference: a Service (group "", kind Service) needs a port. */
export const backendObjectRefEntries = {
  group: v.optional(group, ''),
  kind: v.optional(kind, 'Service'),
  name: objectName,
  namespace: v.optional(namespaceName),
  port: v.optional(portNumber),
};

export const needsServicePort = (ref: { group: string; kind: string; port?: number | undefined }): boolean =>
  !(ref.group === '' && ref.kind === 'Service' && ref.port === undefined);

export const backendObjectRefSchema = v.pipe(
  v.strictObject(backendObjectRefEntries, objectIssue),
  v.check((x) => needsServicePort(x), 'port: required for a Service reference'),
);

/** Two parent references to the same parent must differ in sectionName or port. */
export const parentRefsSchema = v.pipe(
  listOf(parentRefSchema, 32),
  v.check(
    (refs) =>
      new Set(refs.map((r) => JSON.stringify([r.group, r.kind, r.namespace, r.name, r.sectionName, r.port])))
        .size === refs.length,
    'two parentRefs name the same parent with the same sectionName and port',
  ),
);

/** Rule names are unique within a route. */
export const uniqueRuleNames = (rules: readonly { name?: string | undefined }[]): boolean => {
  const names = rules.flatMap((r) => (r.name === undefined ? [] : [r.name]));
  return new Set(names).size === names.length;
};

/** Names in a list are unique (exactly, as the CRD's list-map key). */
export const uniqueNames = (items: readonly { name: string }[]): boolean =>
  new Set(items.map((i) => i.name)).size === items.length;

/** Header names in a list are unique, compared case-insensitively (set and add of a header modifier). */
export const uniqueHeaderNames = (items: readonly { name: string }[]): boolean =>
  new Set(items.map((i) => i.name.toLowerCase())).size === items.length;
