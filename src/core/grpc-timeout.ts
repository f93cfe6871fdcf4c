// The gRPC deadline a client sends in `grpc-timeout` (gRPC over HTTP/2: "TimeoutValue
// TimeoutUnit", at most 8 ASCII digits and one of H M S m u n), and the value a proxy sends on
// with the time that is left. Pure.

const UNIT_MS: Readonly<Record<string, number>> = {
  H: 3_600_000,
  M: 60_000,
  S: 1000,
  m: 1,
  u: 0.001,
  n: 0.000_001,
};

/** The timeout in milliseconds (fractions kept), or null when `value` is not a valid grpc-timeout. */
export function parseGrpcTimeout(value: string | string[] | undefined): number | null {
  if (typeof value !== 'string' || value.length < 2 || value.length > 9) return null;
  const unit = UNIT_MS[value[value.length - 1]!];
  const digits = value.slice(0, -1);
  if (unit === undefined || !/^[0-9]{1,8}$/.test(digits)) return null;
  return Number(digits) * unit;
}

/** `ms` (>= 0) as a grpc-timeout value: whole milliseconds when they fit in 8 digits, else seconds. */
export function formatGrpcTimeout(ms: number): string {
  const whole = Math.max(0, Math.ceil(ms));
  if (whole <= 99_999_999) return `${whole}m`;
  return `${Math.min(99_999_999, Math.ceil(whole / 1000))}S`;
}
