// SPIFFE IDs as Trellis issues and checks them: spiffe://<trust-domain>/ns/<namespace>/sa/<sa>.
// Shared vocabulary: the control plane grants these IDs (src/control/identity/) and names
// endpoints' identities with them (src/control/discovery/); the proxy presents, verifies and
// authorizes them (src/proxy/identity/, src/proxy/mesh/, src/proxy/policy/); the CLI shows them.

/** The SPIFFE ID of a service account (linkerd and Istio use the same form). */
export function spiffeId(trustDomain: string, namespace: string, serviceAccount: string): string {
  return `spiffe://${trustDomain}/ns/${namespace}/sa/${serviceAccount}`;
}

/** A SPIFFE ID as Trellis issues them: spiffe://<trust-domain>/ns/<namespace>/sa/<account>. */
const SPIFFE_ID = /^spiffe:\/\/([^/]+)\/ns\/([^/]+)\/sa\/([^/]+)$/;

/** The namespace of a Trellis SPIFFE ID, or null when `identity` is not one. */
export function spiffeNamespace(identity: string): string | null {
  const match = SPIFFE_ID.exec(identity);
  return match === null ? null : (match[2] ?? null);
}

/** The URI SANs of a certificate as node:crypto's X509Certificate.subjectAltName spells them. */
export function uriSans(subjectAltName: string | undefined): string[] {
  if (subjectAltName === undefined) return [];
  const out: string[] = [];
  // "DNS:a, URI:spiffe://x/ns/y/sa/z": URIs cannot hold ", " (a SPIFFE ID has no spaces).
  for (const part of subjectAltName.split(', ')) {
    if (part.startsWith('URI:')) out.push(part.slice(4));
  }
  return out;
}

/** The first spiffe:// URI SAN of a certificate (subjectAltName as node:crypto spells it), or null. */
export function spiffeUriSan(subjectAltName: string | undefined): string | null {
  return uriSans(subjectAltName).find((u) => u.startsWith('spiffe://')) ?? null;
}

/** The namespace `trellis install` puts the control plane in. */
export const CONTROL_PLANE_NAMESPACE = 'trellis';
/** The control plane's ServiceAccount (`trellis install`): the identity proxies let tap them. */
export const CONTROL_PLANE_SERVICE_ACCOUNT = 'trellis-control';

/** The SPIFFE ID of the control plane: what it presents to a proxy's mTLS tap listener. */
export function controlPlaneId(trustDomain: string, namespace = CONTROL_PLANE_NAMESPACE): string {
  return spiffeId(trustDomain, namespace, CONTROL_PLANE_SERVICE_ACCOUNT);
}
