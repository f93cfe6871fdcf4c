// The service a `trellis run` workload serves: joined when it exists in the state folder, created
// when it does not, with one port, the service port (80 unless --service-port says otherwise),
// whose target port is named "http". So the port clients call does not depend on which instance
// happened to start first, and `trellis run` says which port it joined. A service this run
// created goes again when the app never became ready (a wrong command, a port never opened) and no
// other instance registered under it meanwhile.
import { readdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { writeAtomically } from '../control/discovery/state-file-io.ts';
import { servicePath } from '../control/discovery/state-layout.ts';

/** The service port of a service `trellis run` creates, unless --service-port says otherwise. */
export const DEFAULT_SERVICE_PORT = 80;

export interface ServiceRequest {
  readonly root: string;
  readonly namespace: string;
  readonly name: string;
  readonly appPort: number;
  /** --service-port, when given. */
  readonly servicePort?: number;
}

export interface JoinedService {
  /** The named target ports the workload registers its proxy's inbound port under. */
  readonly targetNames: readonly string[];
  /** Whether this run created the service. */
  readonly created: boolean;
}

interface ServicePort {
  readonly port: number;
  readonly name?: string;
  readonly targetPort?: number | string;
}

/** Joins (or creates) the service; `note` says which port(s) the workload serves. */
export async function joinService(
  request: ServiceRequest,
  note: (text: string) => void,
): Promise<JoinedService> {
  const { root, namespace, name } = request;
  const path = servicePath(root, namespace, name);
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch {
    const port = request.servicePort ?? DEFAULT_SERVICE_PORT;
    const service = { ports: [{ port, name: 'http', targetPort: 'http' }] };
    await writeAtomically(path, JSON.stringify(service, null, 2) + '\n');
    const url = `http://${name}.${namespace}${port === 80 ? '' : `:${port}`}/`;
    note(
      `created service ${name}.${namespace} with port ${port}: ${url} reaches this app (port ${request.appPort})`,
    );
    return { targetNames: ['http'], created: true };
  }
  const ports = await servicePorts(text);
  const named = ports.filter((p) => typeof p.targetPort === 'string');
  const numbered = ports.filter((p) => typeof p.targetPort !== 'string').map((p) => p.port);
  if (named.length > 0) {
    const list = named.map((p) => `${p.port} (target port ${String(p.targetPort)})`).join(', ');
    note(`joined service ${name}.${namespace} on port${named.length > 1 ? 's' : ''} ${list}`);
  }
  if (numbered.length > 0) {
    note(
      `service ${name}.${namespace} port(s) ${numbered.join(', ')} target a port number; ` +
        'name the target port (targetPort: NAME) to reach this workload through its proxy',
    );
  }
  if (request.servicePort !== undefined && !ports.some((p) => p.port === request.servicePort)) {
    note(
      `service ${name}.${namespace} has no port ${request.servicePort} (its ports: ` +
        `${ports.map((p) => p.port).join(', ') || 'none'}); change it with \`trellis apply\``,
    );
  }
  return { targetNames: [...new Set(named.map((p) => String(p.targetPort)))], created: false };
}

/**
 * Removes a service this run created, unless another workload registered under it meanwhile
 * (`instance` is this run's own registration). True when it was removed.
 */
export async function removeCreatedService(
  root: string,
  namespace: string,
  name: string,
  instance: string,
): Promise<boolean> {
  const dir = join(root, 'workloads', namespace);
  for (const file of await readdir(dir).catch(() => [] as string[])) {
    if (!file.endsWith('.json') || file === `${instance}.json`) continue;
    try {
      const other = JSON.parse(await readFile(join(dir, file), 'utf8')) as { service?: unknown };
      if (other.service === name) return false;
    } catch {
      // gone, or being written: not a registration of this service as far as we can tell
    }
  }
  await rm(servicePath(root, namespace, name), { force: true });
  return true;
}

/** The ports of a service file (JSON as `trellis apply` writes it, or YAML written by hand). */
async function servicePorts(text: string): Promise<ServicePort[]> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    // Loaded only for a hand-written file: YAML costs memory that `trellis run` keeps all along.
    const { parse } = await import('yaml');
    parsed = parse(text);
  }
  const ports = (parsed as { ports?: unknown } | null)?.ports;
  return Array.isArray(ports) ? (ports as ServicePort[]).filter((p) => typeof p?.port === 'number') : [];
}
