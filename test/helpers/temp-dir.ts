// Removing a test's temporary folder at the end of a test, from a t.after hook. node:test runs a
// test's after hooks in the order they were registered and skips the rest once one throws, and
// the folder's hook is usually registered before the hooks that stop the test's processes: a
// `trellis run` still writing its workload file there made rm fail (ENOTEMPTY), the stop hooks
// never ran, and the processes they should have stopped kept the test file (and the suite) from
// ever ending. So this retries and never throws; a leftover is only reported.
import { rm } from 'node:fs/promises';

export async function removeTempDir(dir: string): Promise<void> {
  try {
    await rm(dir, { recursive: true, force: true, maxRetries: 5, retryDelay: 100 });
  } catch (err) {
    process.stderr.write(`note: could not remove ${dir}: ${(err as Error).message}\n`);
  }
}
