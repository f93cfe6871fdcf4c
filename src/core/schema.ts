// valibot schema pieces shared by every validated file (proxy config, state folder, resources),
// so that the same kind of value is checked, and reported, the same way everywhere.
import * as v from 'valibot';

/** A TCP port 1..65535. */
export const port = v.pipe(
  v.number('expected a number'),
  v.integer('expected a whole number'),
  v.minValue(1, 'expected a port 1..65535'),
  v.maxValue(65535, 'expected a port 1..65535'),
);

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
