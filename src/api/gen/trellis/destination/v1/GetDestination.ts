// Original file: src/api/destination.proto

export interface GetDestination {
  /**
   * "name.namespace.svc.cluster.local:port", "name.namespace.svc:port", "name.namespace:port",
   * or "IP:port" / "[IPv6]:port" (an original destination address): a Service's ClusterIP and
   * port is answered as that service port's name would be; a known workload address and port (a
   * pod IP) with that single endpoint as discovery knows it (meshed, identity, hint, labels), kept
   * up to date; any other address with itself, one unmeshed endpoint. Never `no_endpoints` with
   * `exists = false`.
   */
  path?: string;
}

export interface GetDestination__Output {
  /**
   * "name.namespace.svc.cluster.local:port", "name.namespace.svc:port", "name.namespace:port",
   * or "IP:port" / "[IPv6]:port" (an original destination address): a Service's ClusterIP and
   * port is answered as that service port's name would be; a known workload address and port (a
   * pod IP) with that single endpoint as discovery knows it (meshed, identity, hint, labels), kept
   * up to date; any other address with itself, one unmeshed endpoint. Never `no_endpoints` with
   * `exists = false`.
   */
  path: string;
}
