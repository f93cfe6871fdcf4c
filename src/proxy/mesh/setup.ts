// Where the proxy's identity and inbound authorizer come from, chosen once at startup from the
// configuration (tests may hand in their own):
//
// - identity: `identity.dir` -> the fixed PEM files; else `identity.address` -> the control
//   plane's Identity API client (it renews), for spiffe://<trustDomain>/ns/<namespace>/sa/
//   <serviceAccount or workload name>; else none (meshed endpoints are then reached as before,
//   and the inbound accepts plaintext only). Startup never waits for the first certificate.
// - authorizer: the default policy plus, with `policy.address`, the control plane's policies.
//
// Both modules are imported only when used: the Identity API client loads gRPC.
import type { ProxyConfig } from '../config.ts';
import type { Logger } from '../../core/log.ts';
import { fileIdentity } from '../identity/file.ts';
import { spiffeId } from '../../core/spiffe.ts';
import type { WorkloadIdentity } from '../identity/provider.ts';
import type { InboundAuthorizer } from '../policy/types.ts';

/** Parts a test (or an embedding program) may supply instead of the configured ones. */
export interface MeshOverrides {
  /** null: no identity, whatever the configuration says. */
  readonly identity?: WorkloadIdentity | null;
  /** null: no authorization checks at all. */
  readonly authorizer?: InboundAuthorizer | null;
}

export async function loadIdentity(
  config: ProxyConfig,
  log: Logger,
  overrides: MeshOverrides,
): Promise<WorkloadIdentity | null> {
  if (overrides.identity !== undefined) return overrides.identity;
  const c = config.identity;
  if (c.dir !== undefined) return fileIdentity(c.dir);
  if (c.address === undefined) return null;
  const { workload } = config;
  const { createIdentityClient } = await import('../identity/identity-client.ts');
  return createIdentityClient({
    address: c.address,
    id: spiffeId(c.trustDomain, workload.namespace, c.serviceAccount ?? workload.name),
    ...(c.tokenFile !== undefined ? { tokenFile: c.tokenFile } : {}),
    log: log.child({ component: 'identity' }),
  });
}

export async function loadAuthorizer(
  config: ProxyConfig,
  log: Logger,
  overrides: MeshOverrides,
): Promise<InboundAuthorizer | null> {
  if (overrides.authorizer !== undefined) return overrides.authorizer;
  const { createAuthorizer } = await import('../policy/authorizer.ts');
  return createAuthorizer({
    defaultPolicy: config.policy.default,
    ...(config.policy.address !== undefined ? { address: config.policy.address } : {}),
    namespace: config.workload.namespace,
    workload: config.workload.name,
    ...(config.appPort === undefined
      ? {}
      : { namedPorts: Object.fromEntries(config.workload.appPortNames.map((n) => [n, config.appPort!])) }),
    log: log.child({ component: 'policy' }),
  });
}
