// Where things live in the state folder of one-machine mode (`trellis up`, default `.trellis/`),
// and the lease a registration may carry. Kept free of the validation and YAML modules
// (local-state.ts) so that `trellis run`, which stays up beside every workload, does not load
// them: it writes its own registration and needs nothing else of the state folder's formats.
import { join } from 'node:path';

/** The longest lease a registration may hold (trellis run renews a 10 s one every few seconds). */
export const MAX_LEASE_MS = 3_600_000;

export function servicePath(root: string, namespace: string, name: string): string {
  return join(root, 'services', namespace, `${name}.yaml`);
}

export function workloadPath(root: string, namespace: string, name: string): string {
  return join(root, 'workloads', namespace, `${name}.json`);
}

/** The token `trellis run` keeps for a workload instance's proxy (src/cli/workload-token.ts). */
export function workloadTokenPath(root: string, namespace: string, instance: string): string {
  return join(root, 'identity', 'tokens', `${namespace}.${instance}.token`);
}

/**
 * A registration's lease, as its holder (`trellis run`) writes it: renewed at `renewedAt` (ms
 * since the epoch) for `durationMs`. Discovery stops serving a registration whose lease ran out
 * and removes its file, so a holder that died without a word (SIGKILL) leaves nothing behind.
 */
export interface Lease {
  readonly renewedAt: number;
  readonly durationMs: number;
}

/** Whether `lease` has run out at `now` (a registration without a lease never does). */
export function leaseExpired(lease: Lease | undefined, now: number): boolean {
  return lease !== undefined && now >= lease.renewedAt + lease.durationMs;
}
