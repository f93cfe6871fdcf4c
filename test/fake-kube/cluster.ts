// A fake API server (server.ts) and a kubeconfig file that points at it, for tests of the CLI
// commands that reach a cluster through the official client (`trellis upgrade`, `trellis check
// --pre/--kubernetes`). Both go away when the test ends.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FakeKubeServer } from './server.ts';

export interface FakeCluster {
  readonly kube: FakeKubeServer;
  /** A temporary folder for the test's files. */
  readonly dir: string;
  /** The kubeconfig file. */
  readonly kubeconfig: string;
}

export async function fakeCluster(t: { after(fn: () => Promise<void>): void }): Promise<FakeCluster> {
  const kube = new FakeKubeServer();
  await kube.start();
  const dir = await mkdtemp(join(tmpdir(), 'trellis-fake-cluster-'));
  t.after(async () => {
    await kube.close();
    await rm(dir, { recursive: true, force: true });
  });
  const kubeconfig = join(dir, 'kubeconfig');
  // The client talks plain http only with insecure-skip-tls-verify set.
  await writeFile(
    kubeconfig,
    `apiVersion: v1
kind: Config
clusters:
- name: fake
  cluster: {server: "${kube.url}", insecure-skip-tls-verify: true}
users:
- name: nobody
  user: {}
contexts:
- name: fake
  context: {cluster: fake, user: nobody}
current-context: fake
`,
  );
  return { kube, dir, kubeconfig };
}
