// The port check, in a module of its own: `trellis run` stays up beside every workload and must
// not load the validation library (core/schema.ts) for it.

/** Whether `n` is a TCP port 1..65535: the check behind schema.ts's `port`, for flags and wire messages. */
export function isPort(n: number): boolean {
  return Number.isInteger(n) && n >= 1 && n <= 65535;
}

/** Whether `name` can name a port: a DNS label, as schema.ts's `dnsLabel` (Server.port, targetPort). */
export function isPortName(name: string): boolean {
  return /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/.test(name);
}
