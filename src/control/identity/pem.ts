// PEM (RFC 7468) for the authority's files and bundles: DER in base64 between BEGIN/END lines.

/** PEM blocks of one kind ("CERTIFICATE") in `text`, as DER. */
export function pemBlocks(text: string, label = 'CERTIFICATE'): Buffer[] {
  const re = new RegExp(`-----BEGIN ${label}-----([A-Za-z0-9+/=\\s]+?)-----END ${label}-----`, 'g');
  return Array.from(text.matchAll(re), (m) => Buffer.from(m[1]!.replace(/\s+/g, ''), 'base64'));
}

/** DER as PEM, 64 characters a line. */
export function toPem(der: Uint8Array, label = 'CERTIFICATE'): string {
  const b64 = Buffer.from(der).toString('base64');
  const lines = b64.match(/.{1,64}/g) ?? [];
  return `-----BEGIN ${label}-----\n${lines.join('\n')}\n-----END ${label}-----\n`;
}
