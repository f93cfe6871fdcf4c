// Original file: src/api/destination.proto

export interface NoEndpoints {
  /**
   * false: the target does not exist; true: it exists but has no ready endpoints.
   */
  exists?: boolean;
}

export interface NoEndpoints__Output {
  /**
   * false: the target does not exist; true: it exists but has no ready endpoints.
   */
  exists: boolean;
}
