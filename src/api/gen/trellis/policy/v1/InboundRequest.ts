// Original file: src/api/policy.proto

export interface InboundRequest {
  namespace?: string;
  /**
   * The workload's name (the service it registers under on one machine; the pod's name on Kubernetes).
   */
  workload?: string;
  /**
   * The workload's labels, when the proxy knows them (Kubernetes podSelector matching).
   */
  labels?: { [key: string]: string };
}

export interface InboundRequest__Output {
  namespace: string;
  /**
   * The workload's name (the service it registers under on one machine; the pod's name on Kubernetes).
   */
  workload: string;
  /**
   * The workload's labels, when the proxy knows them (Kubernetes podSelector matching).
   */
  labels: { [key: string]: string };
}
