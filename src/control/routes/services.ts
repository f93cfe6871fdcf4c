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

/** The traffic annotations of the state folder's Services (only those that have some). */
export function localServiceAnnotations(state: LocalState): Map<string, Readonly<Record<string, string>>> {
  const annotations = new Map<string, Readonly<Record<string, string>>>();
  for (const [key, service] of state.services)
    if (service.annotations !== undefined && Object.keys(service.annotations).length > 0)
      annotations.set(key, service.annotations);
  return annotations;
}
