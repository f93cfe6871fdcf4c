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
  /**
   * Names of the app port as this proxy knows them, each to the app port (`trellis run` names its
   * service's target ports: every one reaches the app). A Server's named port resolves through these
   * first: on one machine each instance of a workload has its own app port, which the control plane
   * cannot tell apart by the workload's name.
   */
  namedPorts?: { [key: string]: number };
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
  /**
   * Names of the app port as this proxy knows them, each to the app port (`trellis run` names its
   * service's target ports: every one reaches the app). A Server's named port resolves through these
   * first: on one machine each instance of a workload has its own app port, which the control plane
   * cannot tell apart by the workload's name.
   */
  namedPorts: { [key: string]: number };
}
