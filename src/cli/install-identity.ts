// The certificates `trellis install` puts into the cluster, made with the control plane's own CA
// code (src/control/identity/ca-certs.ts, leaf.ts):
//   - the identity trust anchor and issuer: generated (a 10-year anchor whose key is thrown away,
//     as Linkerd does, and an issuer it signs), or read from the operator's files and checked
//     (the issuer must be a P-256 CA that one of the anchors signed);
//   - the injector webhook's serving certificate: its own throwaway CA (the caBundle of the
//     MutatingWebhookConfiguration) and a leaf for the Service's DNS names.
import { readFile } from 'node:fs/promises';
import { ConfigError } from '../core/errors.ts';
import {
  DEFAULT_ANCHOR_LIFETIME_MS,
  loadBundle,
  loadCaKeyPair,
  makeAnchor,
  makeIssuer,
  newKeys,
} from '../control/identity/ca-certs.ts';
import { signedBy } from '../control/identity/ca-load.ts';
import { leafTemplate, signLeaf } from '../control/identity/leaf.ts';
import { toPem } from '../control/identity/pem.ts';
import { spiffeId } from '../core/spiffe.ts';

export interface IdentityMaterial {
  readonly trustAnchorsPem: string;
  readonly issuerCertPem: string;
  readonly issuerKeyPem: string;
}

export interface WebhookMaterial {
  readonly caPem: string;
  readonly certPem: string;
  readonly keyPem: string;
}

export const IDENTITY_FILE_FLAGS = {
  anchors: '--identity-trust-anchors-file',
  issuerCert: '--identity-issuer-certificate-file',
  issuerKey: '--identity-issuer-key-file',
} as const;

export interface IdentityFiles {
  readonly anchors?: string | undefined;
  readonly issuerCert?: string | undefined;
  readonly issuerKey?: string | undefined;
}

/** Reads the operator's anchor and issuer files, or generates both; ConfigError names the flag. */
export async function identityMaterial(
  files: IdentityFiles,
  trustDomain: string,
  issuerLifetimeMs: number,
  nowMs: number,
): Promise<IdentityMaterial> {
  const given = (Object.keys(IDENTITY_FILE_FLAGS) as (keyof IdentityFiles)[]).filter(
    (k) => files[k] !== undefined,
  );
  if (given.length === 0) {
    const anchor = loadCaKeyPair(
      await makeAnchor(trustDomain, DEFAULT_ANCHOR_LIFETIME_MS, nowMs),
      'new trust anchor',
    );
    const issuer = await makeIssuer(anchor, trustDomain, issuerLifetimeMs, nowMs);
    return { trustAnchorsPem: anchor.cert.pem, issuerCertPem: issuer.certPem, issuerKeyPem: issuer.keyPem };
  }
  if (given.length !== 3) {
    const missing = (Object.keys(IDENTITY_FILE_FLAGS) as (keyof IdentityFiles)[]).find(
      (k) => files[k] === undefined,
    )!;
    throw new ConfigError(
      IDENTITY_FILE_FLAGS[missing],
      `required with ${given.map((k) => IDENTITY_FILE_FLAGS[k]).join(' and ')}`,
    );
  }
  const read = (key: keyof IdentityFiles): Promise<string> => readIdentityFile(files, key);
  const [anchorsPem, certPem, keyPem] = await Promise.all([
    read('anchors'),
    read('issuerCert'),
    read('issuerKey'),
  ]);
  return checkedIdentity(
    { anchors: anchorsPem, issuerCert: certPem, issuerKey: keyPem },
    {
      anchors: files.anchors!,
      issuer: files.issuerCert!,
      pair: `${files.issuerCert} with ${files.issuerKey}`,
    },
    { anchors: IDENTITY_FILE_FLAGS.anchors, issuer: IDENTITY_FILE_FLAGS.issuerCert },
    nowMs,
  );
}

/** The text of one of the identity files; ConfigError names its flag. */
export async function readIdentityFile(files: IdentityFiles, key: keyof IdentityFiles): Promise<string> {
  return readFile(files[key]!, 'utf8').catch((error: unknown) => {
    throw new ConfigError(IDENTITY_FILE_FLAGS[key], (error as Error).message);
  });
}

/**
 * The anchors and the issuer, checked: the issuer is a P-256 CA that one of the anchors signed,
 * and has not expired. `names` say where each came from (a file, an object in the cluster);
 * ConfigError names `fields` (the flags, or the objects).
 */
export function checkedIdentity(
  pem: { readonly anchors: string; readonly issuerCert: string; readonly issuerKey: string },
  names: { readonly anchors: string; readonly issuer: string; readonly pair: string },
  fields: { readonly anchors: string; readonly issuer: string },
  nowMs: number,
): IdentityMaterial {
  const checked = <T>(field: string, make: () => T): T => {
    try {
      return make();
    } catch (error) {
      throw new ConfigError(field, (error as Error).message);
    }
  };
  const anchors = checked(fields.anchors, () => loadBundle(pem.anchors, names.anchors));
  const issuer = checked(fields.issuer, () =>
    loadCaKeyPair({ certPem: pem.issuerCert, keyPem: pem.issuerKey }, names.pair),
  );
  if (!anchors.some((anchor) => signedBy(issuer.cert, anchor))) {
    throw new ConfigError(fields.issuer, `${names.issuer} is not signed by any anchor of ${names.anchors}`);
  }
  if (issuer.cert.notAfterMs <= nowMs) {
    throw new ConfigError(
      fields.issuer,
      `${names.issuer} expired at ${new Date(issuer.cert.notAfterMs).toISOString()}`,
    );
  }
  return {
    trustAnchorsPem: anchors.map((a) => a.pem).join(''),
    issuerCertPem: pem.issuerCert,
    issuerKeyPem: pem.issuerKey,
  };
}

/** A CA and a serving certificate for `service`.`namespace`.svc (the webhook's Service). */
export async function webhookMaterial(
  service: string,
  namespace: string,
  trustDomain: string,
  lifetimeMs: number,
  nowMs: number,
): Promise<WebhookMaterial> {
  const ca = loadCaKeyPair(await makeAnchor(`${service}.${namespace}`, lifetimeMs, nowMs), 'webhook CA');
  const { keyPem, spki } = await newKeys();
  const der = signLeaf(leafTemplate(ca.key, ca.cert.subjectDer, ca.cert.keyId), {
    spki,
    publicKey: spki.subarray(-65),
    uri: spiffeId(trustDomain, namespace, service),
    dnsNames: [service, `${service}.${namespace}`, `${service}.${namespace}.svc`],
    notBeforeMs: ca.cert.notBeforeMs,
    notAfterMs: ca.cert.notAfterMs,
  });
  return {
    caPem: ca.cert.pem,
    certPem: toPem(der),
    keyPem,
  };
}
