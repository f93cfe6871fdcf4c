// How the control plane taps a proxy it does not reach over loopback (on Kubernetes: at its pod
// IP): over mutual TLS to the proxy's tap listener (port 4190, src/proxy/admin/tap-listener.ts),
// presenting the control plane's own certificate (tap-client-certificate.ts) and accepting only a
// proxy certificate that chains to the trust anchors and names the SPIFFE ID the pod should have
// (its ServiceAccount's, as `trellis check --kubernetes --proxy` expects). A proxy registered with
// a tap listener is tapped there; one with only an admin address, over plain HTTP to that (which
// the proxy answers for loopback callers only: one machine).
import type { RequestOptions } from 'node:https';
import type { ConnectionOptions } from 'node:tls';
import { spiffeUriSan } from '../../core/spiffe.ts';
import type { ScrapeTarget } from '../metrics/collector.ts';
import type { TapClientTls } from './tap-client-certificate.ts';

/** A proxy as the tap fan-out (tap-api.ts) reaches it. */
export interface TapTarget extends ScrapeTarget {
  /** Its mTLS tap listener ("HOST:PORT") and the identity its certificate must name; absent: none. */
  readonly tap?: { readonly address: string; readonly identity: string } | null;
}

/** One mTLS tap connection: our credentials and the identity the proxy must prove. */
export interface ProxyTapTls {
  readonly client: TapClientTls;
  readonly expectedIdentity: string;
}

/** The https request options of a tap over mutual TLS. */
export function proxyTlsOptions(
  mtls: ProxyTapTls,
): RequestOptions & Pick<ConnectionOptions, 'secureContext'> {
  const expected = mtls.expectedIdentity;
  return {
    secureContext: mtls.client.secureContext,
    minVersion: 'TLSv1.3',
    rejectUnauthorized: true,
    // Called once the chain verified: the certificate must name the pod's identity, not a host.
    checkServerIdentity: (_host, cert) => {
      const id = spiffeUriSan(cert.subjectaltname);
      return id === expected
        ? undefined
        : new Error(`the proxy's certificate names ${id ?? 'no SPIFFE ID'}, not ${expected}`);
    },
  };
}
