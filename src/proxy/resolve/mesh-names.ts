// How the proxy reads a host name as a service, the way Kubernetes' DNS search path does for a
// pod: a short name (`web`) is the service of that name in the proxy's own namespace (it is asked
// for as `web.<namespace>`); `web.ns`, `web.ns.svc` and `web.ns.svc.<cluster domain>` name their
// namespace themselves (the control plane reads those, src/control/destination/server.ts). And
// which names certainly are mesh names, even before (or without) the control plane saying so:
// those under `.svc`, and two-label names in the proxy's own namespace.
//
// The namespace is the proxy's (`workload.namespace`), which the runtime gives ServiceDiscovery.

/** Whether a host name (not an IP) may name a service: anything but localhost and `*.localhost`. */
export function mayBeService(host: string): boolean {
  const name = canonicalName(host);
  return name !== '' && name !== 'localhost' && !name.endsWith('.localhost');
}

/** Whether `host` (lower case, no trailing dot) is a short name: one label, not localhost. */
export function isShortName(host: string): boolean {
  return !host.includes('.') && !host.includes(':') && host !== 'localhost' && !/^\d+$/.test(host);
}

/** What to ask the control plane for: the short name qualified with `namespace`, else the host. */
export function serviceQuery(host: string, port: number, namespace: string): string {
  const name = canonicalName(host);
  return `${isShortName(name) ? `${name}.${namespace}` : name}:${port}`;
}

/** Whether `host` can only be a mesh name: under `.svc`, or `NAME.<namespace>`. */
export function isMeshShaped(host: string, namespace: string): boolean {
  const name = canonicalName(host);
  if (name.endsWith('.svc') || name.includes('.svc.')) return true;
  const labels = name.split('.');
  return labels.length === 2 && labels[1] === namespace;
}

/** Lower case, without a trailing dot. */
export function canonicalName(host: string): string {
  const lower = host.toLowerCase();
  return lower.endsWith('.') ? lower.slice(0, -1) : lower;
}
