// A control plane with the identity component, on loopback over a temporary state folder (a
// LocalWatcher and the local catalog; the CA's files in `identity/` of the folder, workload tokens
// verified against the folder), as the tests of the Identity API, of the operator authentication
// and of `trellis identity` start it. The folder is removed and the control plane closed after the
// test.
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LocalWatcher } from '../../src/control/discovery/local.ts';
import { CertificateAuthority, type CertificateAuthorityOptions } from '../../src/control/identity/ca.ts';
import { IdentityComponent } from '../../src/control/identity/component.ts';
import { LocalTokenVerifier } from '../../src/control/identity/tokens.ts';
import {
  localCatalog,
  startControlPlane,
  type ControlPlane,
  type ControlPlaneOptions,
} from '../../src/control/server.ts';
import { removeTempDir } from './temp-dir.ts';

export interface IdentityControlPlaneOptions {
  readonly trustDomain: string;
  /** Writes what the state folder holds before the control plane starts (registrations, say). */
  readonly prepare?: (root: string) => Promise<unknown>;
  /** The CA's options beyond its folder and trust domain. */
  readonly ca?: (root: string) => Partial<CertificateAuthorityOptions>;
  /** The control plane's options beyond its watcher, catalog, loopback listeners and component. */
  readonly plane?: (root: string) => Partial<ControlPlaneOptions> | Promise<Partial<ControlPlaneOptions>>;
}

export interface IdentityControlPlane {
  /** The state folder. */
  readonly root: string;
  readonly ca: CertificateAuthority;
  readonly plane: ControlPlane;
}

export async function startIdentityControlPlane(
  t: { after(fn: () => unknown): void },
  options: IdentityControlPlaneOptions,
): Promise<IdentityControlPlane> {
  const { trustDomain } = options;
  const root = await mkdtemp(join(tmpdir(), 'trellis-identity-plane-'));
  t.after(() => removeTempDir(root));
  await options.prepare?.(root);
  const ca = await CertificateAuthority.open({
    dir: join(root, 'identity'),
    trustDomain,
    ...options.ca?.(root),
  });
  const component = new IdentityComponent({ ca, verifier: new LocalTokenVerifier({ root, trustDomain }) });
  const plane = await startControlPlane({
    watcher: new LocalWatcher({ root }),
    catalog: localCatalog(root),
    grpcListen: '127.0.0.1:0',
    httpListen: '127.0.0.1:0',
    components: [component],
    ...(await options.plane?.(root)),
  });
  t.after(() => plane.close());
  return { root, ca, plane };
}
