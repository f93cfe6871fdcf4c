// The one-line summary of every `trellis` subcommand, in the order `trellis --help` lists them:
// in a module of their own so that the command list loads no subcommand (each imports its
// summary from here for its own --help).
export const SUMMARIES = {
  proxy: 'run the data-plane proxy (inbound, outbound and admin listeners)',
  init: 'write the iptables rules that route a workload through its proxy',
  demo: 'a live demo: the emojivoto app on the mesh, with traffic and golden metrics',
  up: 'run the local control plane over a state folder (default .trellis/)',
  control: 'run the control plane over the Kubernetes API (Destination gRPC + HTTP API)',
  apply:
    'validate YAML resources (Service, Server, AuthorizationPolicy, HTTPLocalRateLimitPolicy, HTTPRoute, GRPCRoute, HTTPFault, XBackendTrafficPolicy) and write them into the state folder',
  run: 'run a workload beside its proxy and register it with `trellis up`',
  stat: 'golden metrics per workload (success, rps, latency), from the control plane',
  'prometheus-config': 'a Prometheus scrape config for the mesh (service discovery of every proxy)',
  edges: 'who talks to whom, with identities and whether mTLS secures it',
  tap: 'live requests through the proxies of a workload (metadata only)',
  top: 'the busiest paths through the proxies of a workload, live',
  trace: 'recent distributed traces of the mesh, or one as a tree of its spans',
  dashboard: 'serve the web dashboard on loopback and print its URL (until Ctrl-C)',
  identity: 'certificate chain of a workload; status and anchor rotation of the CA',
  authz: 'the effective authorization policy of a workload (servers, authorizations)',
  routes: 'the HTTPRoutes and GRPCRoutes attached to a service: status, rules, backends, live numbers',
  get: 'list HTTPRoutes and GRPCRoutes (with their status) or Services, like kubectl get',
  check:
    'check the mesh: control plane, proxies, certificates close to expiry (--pre, --kubernetes: a cluster)',
  install: 'print the Kubernetes manifests of Trellis (--crds: its CustomResourceDefinitions)',
  uninstall: 'print what `trellis install` created, for `kubectl delete -f -`',
  upgrade:
    "print the manifests of this version, keeping the cluster's trust anchor, issuer and configuration",
  inject: 'add the proxy to the pods of Kubernetes manifests (-f FILE, or - for stdin)',
  uninject: 'take the proxy out of the pods of Kubernetes manifests (-f FILE, or -)',
} as const;

export type CommandName = keyof typeof SUMMARIES;
