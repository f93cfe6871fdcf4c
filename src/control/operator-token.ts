// The operator token: the secret an operator (in practice the `trellis` CLI) shows the control
// plane's HTTP API to change state (src/control/operator-auth.ts checks it).
//
//   one machine   `trellis up` creates `<state>/operator-token` (0600, 32 random bytes, base64url)
//                 on its first start and keeps it across restarts; whoever can read the state
//                 folder's token is an operator, as whoever can write its files already is.
//   Kubernetes    `trellis control --operator-token-file FILE` reads it from FILE (a mounted
//                 Secret); without the flag nothing can change the control plane's state over HTTP.
//
// A token is 32 to 1024 printable ASCII characters without spaces (what an HTTP header can carry);
// surrounding whitespace (the newline of `openssl rand -hex 32 > FILE`) is ignored.
import { randomBytes } from 'node:crypto';
import { chmod, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { TrellisError } from '../core/errors.ts';
import { createSecretOnce } from './identity/files.ts';

export const OPERATOR_TOKEN_FILE = 'operator-token';

const TOKEN = /^[\x21-\x7e]{32,1024}$/;

export function operatorTokenPath(root: string): string {
  return join(root, OPERATOR_TOKEN_FILE);
}

/** The token of a file's text; a TrellisError naming `path` when it is not one. */
export function parseOperatorToken(text: string, path: string): string {
  const token = text.trim();
  if (!TOKEN.test(token)) {
    throw new TrellisError(
      'TRELLIS_ERR_OPERATOR_TOKEN',
      `${path}: not an operator token (expected 32 to 1024 printable characters, e.g. from \`openssl rand -hex 32\`)`,
    );
  }
  return token;
}

/** Reads the token of `path` (`--operator-token-file`, or the state folder's). */
export async function readOperatorToken(path: string): Promise<string> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    throw new TrellisError(
      'TRELLIS_ERR_OPERATOR_TOKEN',
      `cannot read the operator token ${path}: ${(error as NodeJS.ErrnoException).code ?? error}`,
    );
  }
  return parseOperatorToken(text, path);
}

/**
 * The operator token of the state folder `root`, created (0600, atomically) on first use. A token
 * file that others may read is narrowed to 0600; `onLoosened` hears of it.
 */
export async function loadOrCreateOperatorToken(
  root: string,
  onLoosened: (path: string) => void,
): Promise<string> {
  const path = operatorTokenPath(root);
  await createTokenFileOnce(path, onLoosened);
  return readOperatorToken(path);
}

/**
 * Makes the token file `path` (0600, atomically, 32 random bytes as base64url) unless it exists;
 * one that others may read is narrowed to 0600 and `onLoosened` hears of it. Also the trace
 * intake's token (src/control/traces/token.ts).
 */
export async function createTokenFileOnce(path: string, onLoosened: (path: string) => void): Promise<void> {
  await createSecretOnce(path, randomBytes(32).toString('base64url') + '\n');
  if (((await stat(path)).mode & 0o077) !== 0) {
    await chmod(path, 0o600);
    onLoosened(path);
  }
}
