// A live tap opened on an in-process proxy's admin listener (GET /tap), as the control plane
// opens it: its JSON lines are collected until the test ends.
import assert from 'node:assert/strict';
import http from 'node:http';
import { NdjsonReader } from '../../src/core/ndjson.ts';

/** Opens GET /tap on `admin` ("HOST:PORT"); resolves once the proxy says the tap is attached. */
export async function openTap(
  t: { after(fn: () => void): void },
  admin: string,
): Promise<Record<string, unknown>[]> {
  const lines: Record<string, unknown>[] = [];
  const reader = new NdjsonReader(1 << 16, (o) => lines.push(o));
  const [host, port] = [admin.slice(0, admin.lastIndexOf(':')), Number(admin.split(':').pop())];
  await new Promise<void>((resolve, reject) => {
    const req = http.get({ host, port, path: '/tap?max_rps=1000', agent: false }, (res) => {
      assert.equal(res.statusCode, 200);
      res.on('data', (d: Buffer) => {
        reader.push(d);
        if (lines.some((l) => l.type === 'started')) resolve();
      });
    });
    req.on('error', reject);
    t.after(() => req.destroy());
  });
  return lines;
}
