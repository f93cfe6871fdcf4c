// Original file: src/api/route.proto

export interface RouteTarget {
  /**
   * The namespace of the asking proxy's workload (its consumer routes apply to it).
   */
  clientNamespace?: string;
  /**
   * The Service the app addressed, and the port.
   */
  namespace?: string;
  service?: string;
  port?: number;
}

export interface RouteTarget__Output {
  /**
   * The namespace of the asking proxy's workload (its consumer routes apply to it).
   */
  clientNamespace: string;
  /**
   * The Service the app addressed, and the port.
   */
  namespace: string;
  service: string;
  port: number;
}
