// The port check, in a module of its own: `trellis run` stays up beside every workload and must
// not load the validation library (core/schema.ts) for it.

/** Whether `n` is a TCP port 1..65535: the check behind schema.ts's `port`, for flags and wire messages. */
export function isPort(n: number): boolean {
  return Number.isInteger(n) && n >= 1 && n <= 65535;
}
