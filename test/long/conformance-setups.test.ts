// The mesh conformance suite (test/e2e/conformance-mesh*.test.ts, the 23 tests of the Gateway API's
// conformance/tests/mesh/) again, in the two other setups the same test files can run in (chosen
// by TRELLIS_CONFORMANCE_WORKLOADS, in a child `node --test`); every test must pass in each:
//   run         `trellis run` workloads: `trellis up`, the Services and routes by `trellis apply`,
//               every pod and client a `trellis run` process (test/helpers/conformance-run.ts);
//   kubernetes  `trellis control` over the fake Kubernetes API server, the objects of the suite's
//               manifests there, routes by the real `kubectl apply` / `delete`, each Accepted in its
//               written-back status (test/helpers/conformance-kube.ts).
// About three minutes together, so they are here and not in `npm test`.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { join } from 'node:path';
import { REPO } from '../helpers/proxy-process.ts';

const FILES = [
  'conformance-mesh.test.ts',
  'conformance-mesh-filters.test.ts',
  'conformance-mesh-grpc.test.ts',
];
/** What each setup writes to stderr as it starts: proof that it, not the in-process one, ran. */
const MARKS = {
  run: /conformance: trellis run workloads over /g,
  kubernetes: /conformance: Kubernetes objects on the fake API server /g,
};

for (const [workloads, mark] of Object.entries(MARKS)) {
  test(
    `the mesh conformance suite passes with TRELLIS_CONFORMANCE_WORKLOADS=${workloads}`,
    { timeout: 600_000 },
    async () => {
      // Without the variable node:test sets in the processes it runs, the child runs its files itself.
      const env: NodeJS.ProcessEnv = {
        ...process.env,
        TRELLIS_CONFORMANCE_WORKLOADS: workloads,
        TRELLIS_JIT_WARM_UP: '0',
      };
      delete env['NODE_TEST_CONTEXT'];
      const child = spawn(
        process.execPath,
        [
          '--test',
          '--test-concurrency=2',
          '--test-reporter=tap',
          ...FILES.map((f) => join(REPO, 'test/e2e', f)),
        ],
        { cwd: REPO, env, stdio: ['ignore', 'pipe', 'pipe'] },
      );
      let out = '';
      child.stdout.on('data', (d: Buffer) => (out += d.toString()));
      child.stderr.on('data', (d: Buffer) => (out += d.toString()));
      const [code] = (await once(child, 'exit')) as [number | null];
      const passed = [...out.matchAll(/^# pass (\d+)$/gm)].map((m) => Number(m[1]));
      const failed = [...out.matchAll(/^# fail (\d+)$/gm)].map((m) => Number(m[1]));
      assert.equal(code, 0, out.slice(-8000));
      assert.equal((out.match(mark) ?? []).length, FILES.length, 'each file set up its mesh this way');
      assert.deepEqual(failed, [0], out.slice(-8000));
      // 23 conformance tests, the gRPC header modifier's four cases counted as one more test each.
      assert.ok(passed[0]! >= 27, `only ${passed[0]} tests passed:\n${out.slice(-4000)}`);
    },
  );
}
