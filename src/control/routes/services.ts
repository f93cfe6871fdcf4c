// The Services of the one-machine state folder (services/, written by `trellis apply` and
// `trellis run`) as the ServiceIndex route status and the route API resolve references against.
import type { LocalState } from '../discovery/local-state.ts';
import type { ServiceIndex } from './status.ts';

export function localServiceIndex(state: LocalState): ServiceIndex {
  const index = new Map<string, { port: number; name?: string | undefined }[]>();
  for (const [key, service] of state.services)
    index.set(
      key,
      service.ports.map((p) => ({ port: p.port, name: p.name })),
    );
  return index;
}
