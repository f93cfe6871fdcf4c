// Original file: src/api/route.proto

export interface Extension {
  /**
   * HTTPFault
   */
  kind?: string;
  namespace?: string;
  name?: string;
  /**
   * The resource's spec as JSON (validated by the proxy with the schema `trellis apply` uses).
   */
  specJson?: string;
}

export interface Extension__Output {
  /**
   * HTTPFault
   */
  kind: string;
  namespace: string;
  name: string;
  /**
   * The resource's spec as JSON (validated by the proxy with the schema `trellis apply` uses).
   */
  specJson: string;
}
