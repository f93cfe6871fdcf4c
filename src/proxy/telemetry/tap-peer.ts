// The other side of an outbound exchange as a live tap reports it (exchange-record.ts TapPeer):
// the endpoint it was sent to and, when the endpoint is meshed, the identity the proxy verified
// on it (the mesh connects to a meshed endpoint only over mTLS with that identity).
import { meshIdentityOf } from '../../core/endpoints.ts';
import { targetKey } from '../../core/target.ts';
import type { Pick } from '../outbound/discovery.ts';
import type { TapPeer } from './exchange-record.ts';

const NO_PEER: TapPeer = { address: '', identity: null };

/** The tap's peer of an outbound exchange sent to `pick` (null: none was picked). */
export function endpointTapPeer(pick: Pick | null): TapPeer {
  if (pick === null) return NO_PEER;
  return { address: targetKey(pick.address), identity: meshIdentityOf(pick.endpoint) };
}
