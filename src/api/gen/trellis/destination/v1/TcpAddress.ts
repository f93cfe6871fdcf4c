// Original file: src/api/destination.proto

export interface TcpAddress {
  /**
   * An IPv4 or IPv6 address in text form ("10.0.0.7", "fd00::7").
   */
  ip?: string;
  port?: number;
}

export interface TcpAddress__Output {
  /**
   * An IPv4 or IPv6 address in text form ("10.0.0.7", "fd00::7").
   */
  ip: string;
  port: number;
}
