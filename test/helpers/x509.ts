// @peculiar/x509, ready to use, for the tests and benchmarks: an X.509 implementation independent
// of the authority's own DER writer (src/control/identity/certificate.ts), to build test CAs,
// CSRs and leaves and to check what the authority writes. The Reflect polyfill it needs
// (reflect-metadata) is loaded first and its crypto provider is Node's WebCrypto: import it from
// here, never from '@peculiar/x509' directly, so that the set-up always happens (ES modules run
// their imports in order). Nothing under src/ loads it (see src/control/identity/ca-certs.ts).
import 'reflect-metadata';
import { webcrypto } from 'node:crypto';
import * as x509 from '@peculiar/x509';

x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);

export { x509 };
export { toPem } from '../../src/control/identity/pem.ts';

/** ECDSA P-256 with SHA-256, as WebCrypto names it: every key and signature of the mesh. */
export const EC_P256 = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;
