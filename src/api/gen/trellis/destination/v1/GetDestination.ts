// Original file: src/api/destination.proto

export interface GetDestination {
  /**
   * "name.namespace.svc.cluster.local:port", "name.namespace.svc:port", "name.namespace:port",
   * or "IP:port" (a direct address: answered with that single endpoint).
   */
  path?: string;
}

export interface GetDestination__Output {
  /**
   * "name.namespace.svc.cluster.local:port", "name.namespace.svc:port", "name.namespace:port",
   * or "IP:port" (a direct address: answered with that single endpoint).
   */
  path: string;
}
