// Original file: src/api/route.proto

import type { Long } from '@grpc/proto-loader';

export interface Route {
  /**
   * HTTPRoute | GRPCRoute
   */
  kind?: string;
  namespace?: string;
  name?: string;
  /**
   * metadata.creationTimestamp in milliseconds since the epoch (orders equal matches).
   */
  createdMs?: number | string | Long;
  /**
   * The route's spec as JSON: parentRefs, hostnames, rules, with the CRD's defaults filled in.
   */
  specJson?: string;
  /**
   * The route's traffic annotations, laid over the Service's for requests its rules match.
   */
  annotations?: { [key: string]: string };
}

export interface Route__Output {
  /**
   * HTTPRoute | GRPCRoute
   */
  kind: string;
  namespace: string;
  name: string;
  /**
   * metadata.creationTimestamp in milliseconds since the epoch (orders equal matches).
   */
  createdMs: number;
  /**
   * The route's spec as JSON: parentRefs, hostnames, rules, with the CRD's defaults filled in.
   */
  specJson: string;
  /**
   * The route's traffic annotations, laid over the Service's for requests its rules match.
   */
  annotations: { [key: string]: string };
}
