// Original file: src/api/policy.proto

export interface HttpRoute {
  /**
   * An exact path, or a prefix ending in "*" ("/api/*").
   */
  path?: string;
  /**
   * Upper-case methods; empty: any method.
   */
  methods?: string[];
}

export interface HttpRoute__Output {
  /**
   * An exact path, or a prefix ending in "*" ("/api/*").
   */
  path: string;
  /**
   * Upper-case methods; empty: any method.
   */
  methods: string[];
}
