// valibot schema pieces shared by every validated file (proxy config, state folder, resources),
// so that the same kind of value is checked, and reported, the same way everywhere; with the plain
// checks and value lists behind them, for the CLI's flags and the proxy's wire messages.
import * as v from 'valibot';
import { isPort } from './port.ts';

export { isPort };

/** A TCP port 1..65535 (every issue says so: `"80"` is "expected a port 1..65535"). */
export const port = v.pipe(v.number('expected a port 1..65535'), v.check(isPort, 'expected a port 1..65535'));

/**
 * How the proxy handles a port's traffic: `auto` detects the protocol, the others declare it
 * (detection skipped). The proxy's destinations (config) and the service ports of the state
 * folder (which `trellis apply` writes from a Service's appProtocol).
 */
export const PORT_PROTOCOLS = ['auto', 'http1', 'h2', 'opaque'] as const;
export type PortProtocol = (typeof PORT_PROTOCOLS)[number];
export const portProtocol = v.picklist(PORT_PROTOCOLS, 'expected auto, http1, h2 or opaque');

/** The protocols a policy Server declares (`detect`: the proxy finds out). */
export const SERVER_PROTOCOLS = ['detect', 'http1', 'http2', 'grpc', 'opaque'] as const;
export type ServerProtocol = (typeof SERVER_PROTOCOLS)[number];
export const serverProtocol = v.picklist(SERVER_PROTOCOLS, `expected one of ${SERVER_PROTOCOLS.join(', ')}`);

/** A Kubernetes-style DNS label (names of services, namespaces, ports). */
export const dnsLabel = v.pipe(
  v.string('expected a string'),
  v.regex(/^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/, 'expected a DNS label (a-z, 0-9, -; at most 63)'),
);

/**
 * The message for a strict object's own issues: `unknown` names a key the schema does not have
 * ("unknown setting", "unknown field"); anything else says what was expected.
 */
export function strictObjectMessage(unknown: string): (issue: v.BaseIssue<unknown>) => string {
  return (issue) =>
    issue.kind === 'schema' && issue.expected === 'never'
      ? unknown
      : `expected ${issue.expected}, got ${issue.received}`;
}

/**
 * The message of a Kubernetes-shaped resource's strict objects (`trellis apply` kinds): an unknown
 * field, a missing one, or not an object.
 */
export const objectIssue = (issue: v.BaseIssue<unknown>): string =>
  issue.expected === 'never'
    ? 'unknown field'
    : issue.received === 'undefined'
      ? 'required'
      : `expected ${issue.expected}, got ${issue.received}`;

/** labels, annotations, matchLabels: a map of strings. */
export const stringMap = v.record(v.string(), v.string('expected a string'), 'expected a map of strings');
