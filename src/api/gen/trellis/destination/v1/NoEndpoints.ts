// Original file: src/api/destination.proto

export interface NoEndpoints {
  /**
   * false: the target does not exist; true: it exists but has no ready endpoints.
   */
  exists?: boolean;
  /**
   * With `exists = false` for a service name: the ports that service does have, when it exists
   * but not on the port asked for (so that the proxy can say which ports there are); empty when
   * there is no such service.
   */
  ports?: number[];
}

export interface NoEndpoints__Output {
  /**
   * false: the target does not exist; true: it exists but has no ready endpoints.
   */
  exists: boolean;
  /**
   * With `exists = false` for a service name: the ports that service does have, when it exists
   * but not on the port asked for (so that the proxy can say which ports there are); empty when
   * there is no such service.
   */
  ports: number[];
}
