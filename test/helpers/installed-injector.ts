// Runs `trellis control --injector-listen` as the installed Deployment would: with the injector's
// certificate from the Secret and its config.yaml from the ConfigMap of a `trellis install` output,
// against a (fake) API server. For the tests of the webhook (install.test.ts, admission-webhook.test.ts).
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startCli, waitFor } from './cli.ts';
import { removeTempDir } from './temp-dir.ts';

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

export interface InstalledInjector {
  /** HOST:PORT of the injector's HTTPS listener. */
  readonly address: string;
  /** The webhook's caBundle, PEM. */
  readonly caPem: string;
  /** A folder with tls.crt, tls.key and config.yaml (and room for the test's files). */
  readonly dir: string;
  /** HOST:PORT of the control plane's gRPC API (destination, identity, policy). */
  readonly grpc: string;
}

export async function startInstalledInjector(
  t: { after(fn: () => Promise<unknown>): void },
  kubeUrl: string,
  objects: readonly Json[],
  /** More flags of `trellis control` (e.g. the install's --identity-dir). */
  extraArgs: readonly string[] = [],
): Promise<InstalledInjector> {
  const find = (kind: string, name?: string): Json =>
    objects.find((o) => o['kind'] === kind && (name === undefined || o['metadata']['name'] === name))!;
  const dir = await mkdtemp(join(tmpdir(), 'trellis-injector-'));
  t.after(() => removeTempDir(dir));
  const tls = find('Secret', 'trellis-injector-tls')['stringData'];
  await writeFile(join(dir, 'tls.crt'), tls['tls.crt']);
  await writeFile(join(dir, 'tls.key'), tls['tls.key']);
  await writeFile(join(dir, 'config.yaml'), find('ConfigMap', 'trellis-config')['data']['config.yaml']);
  const caPem = Buffer.from(
    find('MutatingWebhookConfiguration')['webhooks'][0]['clientConfig']['caBundle'],
    'base64',
  ).toString();
  const control = startCli(t, [
    'control',
    '--kubeconfig-server',
    kubeUrl,
    '--grpc-listen=127.0.0.1:0',
    '--http-listen=127.0.0.1:0',
    '--log-level=error',
    '--injector-listen=127.0.0.1:0',
    `--injector-tls-dir=${dir}`,
    `--injector-config=${join(dir, 'config.yaml')}`,
    ...extraArgs,
  ]);
  const ready = await waitFor('the ready line', async () => {
    const line = control.stdout().split('\n')[0];
    return control.stdout().includes('\n') ? (JSON.parse(line!) as Json) : null;
  });
  return { address: ready['injector'] as string, caPem, dir, grpc: ready['grpc'] as string };
}
