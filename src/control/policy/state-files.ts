// Policy resources in the state folder of one-machine mode, beside services/ and workloads/
// (src/control/discovery/local-state.ts):
//
//   <root>/policy/<namespace>/server-<name>.yaml               a Server
//   <root>/policy/<namespace>/authorizationpolicy-<name>.yaml  an AuthorizationPolicy
//   <root>/policy/<namespace>/httplocalratelimitpolicy-<name>.yaml  an HTTPLocalRateLimitPolicy
//
// Each file holds the resource as `trellis apply -f` accepted it (apiVersion, kind, metadata,
// spec), normalized, and is read back through the same validation (src/control/resources.ts), so
// a hand-edited file is held to the same rules. Writes are atomic (a temporary file renamed into
// place); names starting with "." or ending in ".tmp" are ignored. A bad file is logged with the
// field that is wrong and skipped; the rest of the folder still applies.
import { basename, join } from 'node:path';
import { stringify } from 'yaml';
import { ConfigError } from '../../core/errors.ts';
import {
  type FileCache,
  readYamlFolder,
  removeFile,
  writeIfChanged,
  type WriteOutcome,
} from '../discovery/state-file-io.ts';
import type { Logger } from '../../core/log.ts';
import { parseResources } from '../resources.ts';
import type {
  AuthorizationPolicyResource,
  PolicyResource,
  PolicySnapshot,
  RateLimitPolicyResource,
  ServerResource,
} from './model.ts';
import { POLICY_API_VERSION } from './schema.ts';

export function policyDir(root: string): string {
  return join(root, 'policy');
}

export function policyPath(
  root: string,
  resource: Pick<PolicyResource, 'kind' | 'namespace' | 'name'>,
): string {
  return join(policyDir(root), resource.namespace, `${resource.kind.toLowerCase()}-${resource.name}.yaml`);
}

/** The resource as a Kubernetes-shaped document (what the file holds, and what a CRD object is). */
export function policyDocument(resource: PolicyResource): Record<string, unknown> {
  return {
    apiVersion: POLICY_API_VERSION,
    kind: resource.kind,
    metadata: { name: resource.name, namespace: resource.namespace },
    spec: resource.spec,
  };
}

/** Writes a resource's file unless it holds the same already; says which. */
export async function writePolicyFile(root: string, resource: PolicyResource): Promise<WriteOutcome> {
  return writeIfChanged(policyPath(root, resource), stringify(policyDocument(resource)));
}

/** Removes a resource's file; false when there was none. */
export async function deletePolicyFile(
  root: string,
  resource: Pick<PolicyResource, 'kind' | 'namespace' | 'name'>,
): Promise<boolean> {
  return removeFile(policyPath(root, resource));
}

/** Parsed files by path, so unchanged files are neither re-read nor re-reported. */
export type PolicyFileCache = FileCache<PolicyResource | null>;

/** Reads every policy file. Never throws: unreadable or invalid files are logged and skipped. */
export async function readPolicyFolder(
  root: string,
  cache: PolicyFileCache,
  log: Logger,
): Promise<PolicySnapshot> {
  const resources = await readYamlFolder(
    policyDir(root),
    cache,
    log,
    'policy file',
    (text, file, namespace) => parsePolicyFile(text, file, namespace, basename(file), log),
  );
  const rateLimits = resources.filter(
    (r): r is RateLimitPolicyResource => r.kind === 'HTTPLocalRateLimitPolicy',
  );
  return {
    servers: resources.filter((r): r is ServerResource => r.kind === 'Server'),
    authorizations: resources.filter(
      (r): r is AuthorizationPolicyResource => r.kind === 'AuthorizationPolicy',
    ),
    // Absent when there are none, so a snapshot without them looks as it did before they existed.
    ...(rateLimits.length === 0 ? {} : { rateLimits }),
  };
}

/** One policy file's resource, or null (logged) when it is invalid or in the wrong place. */
function parsePolicyFile(
  text: string,
  file: string,
  namespace: string,
  name: string,
  log: Logger,
): PolicyResource | null {
  let resource: PolicyResource | null = null;
  try {
    const parsed = parseResources(text, file);
    const only = parsed[0];
    if (
      parsed.length !== 1 ||
      only === undefined ||
      (only.kind !== 'Server' &&
        only.kind !== 'AuthorizationPolicy' &&
        only.kind !== 'HTTPLocalRateLimitPolicy')
    ) {
      throw new ConfigError(file, 'expected one Server, AuthorizationPolicy or HTTPLocalRateLimitPolicy');
    }
    // The file's place must agree with its content, or `apply --delete` would miss it.
    if (
      only.namespace !== namespace ||
      `${only.kind.toLowerCase()}-${only.name}.yaml` !== name.replace(/\.yml$/, '.yaml')
    ) {
      throw new ConfigError(
        file,
        `holds ${only.kind} ${only.namespace}/${only.name}, which belongs in another file`,
      );
    }
    resource = only;
  } catch (error) {
    log.warn('invalid policy file skipped', {
      file,
      problem: error instanceof ConfigError ? error.message : String(error),
    });
  }
  return resource;
}
