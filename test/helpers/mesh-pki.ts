// Test certificates for the mesh transport: a root CA (ECDSA P-256, as the mesh uses), leaves with
// a SPIFFE ID as their URI SAN (valid now, expired, or from another CA), folders in the layout of
// fileIdentity (key.pem, cert.pem, trust-anchors.pem), and a WorkloadIdentity whose credentials a
// test swaps (rotation) by firing its onChange. Also a small mesh to run them in: a control plane
// over a temporary state folder (meshed workloads with identities) and in-process proxies.
import { localPolicyComponent } from '../../src/control/policy/component.ts';
import { webcrypto } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EC_P256, toPem, x509 } from './x509.ts';
import { LocalWatcher } from '../../src/control/discovery/local.ts';
import { writeServiceFile, writeWorkloadFile } from '../../src/control/discovery/local-state.ts';
import { localCatalog, startControlPlane } from '../../src/control/server.ts';
import { targetKey } from '../../src/core/target.ts';
import { silentLogger } from '../../src/core/log.ts';
import { createRouteComponent } from '../../src/control/routes/component.ts';
import { LocalRouteSource } from '../../src/control/routes/source.ts';
import { validateProxyConfig } from '../../src/proxy/config.ts';
import { fileIdentity } from '../../src/proxy/identity/file.ts';
import type { CertifiedKey, WorkloadIdentity } from '../../src/proxy/identity/provider.ts';

type CryptoKeyPair = webcrypto.CryptoKeyPair;
import type { InboundAuthorizer } from '../../src/proxy/policy/types.ts';
import { startProxy, type RunningProxy } from '../../src/proxy/proxy.ts';

export interface TestCa {
  readonly certPem: string;
  readonly cert: x509.X509Certificate;
  readonly keys: CryptoKeyPair;
}

export interface TestLeaf {
  readonly id: string;
  readonly keyPem: string;
  readonly certPem: string;
  readonly notBefore: Date;
  readonly notAfter: Date;
}

const HOUR = 3600_000;

async function keyPair(): Promise<CryptoKeyPair> {
  return (await webcrypto.subtle.generateKey(EC_P256, true, ['sign', 'verify'])) as CryptoKeyPair;
}

export async function createCa(name = 'Trellis Test Root'): Promise<TestCa> {
  const keys = await keyPair();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    name: `CN=${name}`,
    keys,
    signingAlgorithm: EC_P256,
    notBefore: new Date(Date.now() - HOUR),
    notAfter: new Date(Date.now() + 48 * HOUR),
    extensions: [
      new x509.BasicConstraintsExtension(true, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
    ],
  });
  return { certPem: cert.toString('pem') + '\n', cert, keys };
}

/** A leaf for `id` (a spiffe:// URI) signed by `ca`; by default valid from an hour ago for a day. */
export async function issueLeaf(
  ca: TestCa,
  id: string,
  validity: { notBefore?: Date; notAfter?: Date } = {},
): Promise<TestLeaf> {
  const keys = await keyPair();
  const notBefore = validity.notBefore ?? new Date(Date.now() - HOUR);
  const notAfter = validity.notAfter ?? new Date(Date.now() + 24 * HOUR);
  const cert = await x509.X509CertificateGenerator.create({
    subject: 'CN=trellis-proxy',
    issuer: ca.cert.subject,
    publicKey: keys.publicKey,
    signingKey: ca.keys.privateKey,
    signingAlgorithm: EC_P256,
    notBefore,
    notAfter,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension(['1.3.6.1.5.5.7.3.1', '1.3.6.1.5.5.7.3.2']),
      new x509.SubjectAlternativeNameExtension([{ type: 'url', value: id }], true),
    ],
  });
  const pkcs8 = await webcrypto.subtle.exportKey('pkcs8', keys.privateKey);
  return {
    id,
    keyPem: toPem(new Uint8Array(pkcs8), 'PRIVATE KEY'),
    certPem: cert.toString('pem') + '\n',
    notBefore,
    notAfter,
  };
}

/** Writes a fileIdentity folder; returns its path. */
export async function writeIdentityDir(dir: string, leaf: TestLeaf, anchorsPem: string): Promise<string> {
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, 'key.pem'), leaf.keyPem, { mode: 0o600 });
  await writeFile(join(dir, 'cert.pem'), leaf.certPem);
  await writeFile(join(dir, 'trust-anchors.pem'), anchorsPem);
  return dir;
}

export function certifiedKey(leaf: TestLeaf, anchorsPem: string): CertifiedKey {
  return {
    keyPem: leaf.keyPem,
    chainPem: leaf.certPem,
    trustAnchorsPem: anchorsPem,
    notBeforeMs: leaf.notBefore.getTime(),
    expiresAtMs: leaf.notAfter.getTime(),
  };
}

/** A WorkloadIdentity a test controls: set() swaps the credentials and fires onChange. */
export interface TestIdentity extends WorkloadIdentity {
  set(key: CertifiedKey): void;
}

export function testIdentity(id: string, initial: CertifiedKey | null): TestIdentity {
  let current = initial;
  const listeners = new Set<(key: CertifiedKey) => void>();
  let resolveReady!: () => void;
  const ready = new Promise<void>((r) => (resolveReady = r));
  if (initial !== null) resolveReady();
  return {
    id,
    current: () => current,
    ready: () => ready,
    onChange(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    close() {
      listeners.clear();
    },
    set(key) {
      current = key;
      resolveReady();
      for (const l of listeners) l(key);
    },
  };
}

// ---- a small mesh: a control plane over a temp state folder and in-process proxies ----------

export interface MeshWorld {
  readonly root: string;
  readonly ca: TestCa;
  /** The Destination API, "host:port". */
  readonly destination: string;
  /** Has the control plane read the route files now (what a proxy's new Routes watch gets next). */
  rescanRoutes(): Promise<void>;
  /** Registers a meshed workload of service `service` (port 8080) at 127.0.0.1:`port`. */
  register(service: string, name: string, port: number, identity: string, meshed?: boolean): Promise<void>;
  /** Starts an in-process proxy; `app` is its inbound target. Stopped with the world. */
  proxy(opts: {
    identity: WorkloadIdentity | null;
    app?: number;
    authorizer?: InboundAuthorizer | null;
    config?: Record<string, unknown>;
  }): Promise<RunningProxy>;
  close(): Promise<void>;
}

export const TRUST_DOMAIN = 'mesh.test';
export function idOf(sa: string, ns = 'default'): string {
  return `spiffe://${TRUST_DOMAIN}/ns/${ns}/sa/${sa}`;
}

export async function startMeshWorld(): Promise<MeshWorld> {
  const root = await mkdtemp(join(tmpdir(), 'trellis-mesh-'));
  const ca = await createCa();
  const watcher = new LocalWatcher({ root, debounceMs: 10, rescanIntervalMs: 300 });
  const routeSource = new LocalRouteSource({ root, log: silentLogger });
  const cp = await startControlPlane({
    watcher,
    catalog: localCatalog(root),
    grpcListen: '127.0.0.1:0',
    httpListen: '127.0.0.1:0',
    metricsIntervalMs: 60_000,
    components: [createRouteComponent(routeSource, silentLogger), localPolicyComponent(root, silentLogger)],
  });
  const proxies: RunningProxy[] = [];
  const services = new Set<string>();
  return {
    root,
    ca,
    destination: cp.grpc,
    rescanRoutes: () => routeSource.rescan(),
    async register(service, name, port, identity, meshed = true) {
      if (!services.has(service)) {
        services.add(service);
        await writeServiceFile(root, 'default', service, { ports: [{ port: 8080, targetPort: 'http' }] });
      }
      await writeWorkloadFile(root, 'default', name, {
        service,
        address: '127.0.0.1',
        ports: [{ name: 'http', port }],
        meshed,
        identity,
      });
      // Until the control plane's discovery has it (proxies asking before would go direct).
      const want = `127.0.0.1:${port}`;
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => {
          sub.unsubscribe();
          reject(new Error(`discovery did not see ${name} in time`));
        }, 10_000);
        const seen = new Map<string, { meshed: boolean; identity: string | null }>();
        const sub = watcher.subscribe({ namespace: 'default', name: service, port: 8080 }, (u) => {
          if (u.kind === 'reset') seen.clear();
          if (u.kind === 'reset' || u.kind === 'add')
            for (const e of u.endpoints) seen.set(targetKey(e.address), e);
          if (u.kind === 'remove') for (const a of u.addresses) seen.delete(a);
          const e = seen.get(want);
          if (e !== undefined && e.meshed === meshed && e.identity === identity) {
            clearTimeout(timer);
            queueMicrotask(() => sub.unsubscribe());
            resolve();
          }
        });
      });
    },
    async proxy(opts) {
      const config = validateProxyConfig({
        inboundListen: '127.0.0.1:0',
        outboundListen: '127.0.0.1:0',
        adminListen: '127.0.0.1:0',
        ...(opts.app !== undefined ? { appPort: opts.app } : {}),
        discovery: { address: cp.grpc, failFastMs: 3000 },
        workload: { name: 'test', namespace: 'default' },
        log: { level: 'off' },
        timeouts: { connectMs: 2000, drainGraceMs: 200 },
        ...opts.config,
      });
      const p = await startProxy(config, silentLogger, undefined, {
        identity: opts.identity,
        ...(opts.authorizer !== undefined ? { authorizer: opts.authorizer } : {}),
      });
      proxies.push(p);
      return p;
    },
    async close() {
      await Promise.all(proxies.map((p) => p.shutdown(200)));
      await cp.close();
      await rm(root, { recursive: true, force: true });
    },
  };
}

/** A fileIdentity-shaped identity for `sa` from `ca` (through a folder, as operators give it). */
export async function identityFor(world: MeshWorld, sa: string): Promise<WorkloadIdentity> {
  const leaf = await issueLeaf(world.ca, idOf(sa));
  const dir = await writeIdentityDir(join(world.root, 'identities', sa), leaf, world.ca.certPem);
  return fileIdentity(dir);
}
