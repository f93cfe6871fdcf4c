// The version of Trellis: package.json's, read beside src/ or dist/ (for `trellis version` and
// the default image tag of `trellis install`).
import { readFileSync } from 'node:fs';

export function packageVersion(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as {
    version: string;
  };
  return pkg.version;
}
