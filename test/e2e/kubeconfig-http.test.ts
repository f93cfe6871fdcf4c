// A kubeconfig whose cluster is plain http:// (`kubectl proxy`, a local test server) works for the
// CLI's cluster commands as it does for kubectl and for `trellis control --kubeconfig-server`:
// the official client refuses http unless the cluster says insecure-skip-tls-verify, and a new
// user pointing `trellis check --pre` at `kubectl proxy` got "HTTP protocol is not allowed when
// skipTLSVerify is not set or false" instead of the checks.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fakeCluster } from '../fake-kube/cluster.ts';
import { runCli } from '../helpers/cli.ts';

test(
  'check --pre reaches an http:// API server of a kubeconfig without insecure-skip-tls-verify',
  { timeout: 60_000 },
  async (t) => {
    const { kube, dir } = await fakeCluster(t);
    const kubeconfig = join(dir, 'kubeconfig-plain-http');
    await writeFile(
      kubeconfig,
      `apiVersion: v1
kind: Config
clusters:
- name: proxy
  cluster: {server: "${kube.url}"}
users:
- name: nobody
  user: {}
contexts:
- name: proxy
  context: {cluster: proxy, user: nobody}
current-context: proxy
`,
    );
    const r = await runCli(['check', '--pre', '--kubeconfig', kubeconfig]);
    assert.doesNotMatch(r.stdout + r.stderr, /skipTLSVerify|HTTP protocol is not allowed/);
    assert.match(r.stdout, /^✔ can query the Kubernetes API: version v1\.\d+/m);
  },
);
