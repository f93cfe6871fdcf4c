// gRPC through the proxy with a real gRPC stack (@grpc/grpc-js) on both ends: every call shape,
// statuses and metadata in trailers, cancellation and deadlines. The same suite runs against the
// H2Proxy in-process (the harness of the unit tests) and against the `trellis proxy` process,
// whose inbound listener forwards to the app port.
import * as grpc from '@grpc/grpc-js';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import * as net from 'node:net';
import { createInterface } from 'node:readline';
import { after, before, describe, test } from 'node:test';
import {
  createEchoClient,
  startEchoServer,
  type EchoClient,
  type EchoReply,
  type EchoServer,
} from '../fixtures/grpc-echo.ts';
import { startProxyHarness } from '../fixtures/grpc-proxy-harness.ts';
import { CLI, LOOPBACK_LISTENERS } from '../helpers/proxy-process.ts';

interface Environment {
  /** Where the gRPC client connects (the proxy). */
  address: string;
  echo: EchoServer;
  close(): Promise<void>;
}

async function waitFor(cond: () => boolean, what: string, timeoutMs = 3000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

function unary(client: EchoClient, req: Parameters<EchoClient['Unary']>[0], options: grpc.CallOptions = {}) {
  return new Promise<{ err: grpc.ServiceError | null; reply?: EchoReply }>((resolve) =>
    client.Unary(req, options, (err, reply) => resolve({ err, reply })),
  );
}

function grpcSuite(name: string, start: () => Promise<Environment>): void {
  describe(name, () => {
    let env: Environment;
    let client: EchoClient;
    before(async () => {
      env = await start();
      client = createEchoClient(env.address);
    });
    after(async () => {
      client?.close();
      await env?.close();
    });

    test('unary', async () => {
      const payload = Buffer.alloc(1 << 20, 7);
      const { err, reply } = await unary(client, { message: 'hello', payload });
      assert.equal(err, null);
      assert.equal(reply?.message, 'hello');
      assert.ok(reply?.payload.equals(payload));
    });

    test('server streaming', async () => {
      const call = client.ServerStream({ message: 's', count: 5, delayMs: 5 });
      const indices: number[] = [];
      for await (const reply of call as AsyncIterable<EchoReply>) indices.push(reply.index);
      assert.deepEqual(indices, [0, 1, 2, 3, 4]);
    });

    test('client streaming', async () => {
      const reply = await new Promise<EchoReply>((resolve, reject) => {
        const call = client.ClientStream({}, (err, r) => (err ? reject(err) : resolve(r!)));
        for (const message of ['a', 'b', 'c']) call.write({ message });
        call.end();
      });
      assert.equal(reply.message, 'a,b,c');
      assert.equal(reply.index, 3);
    });

    test('bidi streaming, each reply before the next request', async () => {
      const call = client.Bidi();
      const replies: string[] = [];
      for (const message of ['x', 'y', 'z']) {
        call.write({ message });
        const reply = await new Promise<EchoReply>((resolve) => call.once('data', resolve));
        replies.push(reply.message);
      }
      call.end();
      await new Promise((resolve) => call.once('end', resolve));
      assert.deepEqual(replies, ['echo:x', 'echo:y', 'echo:z']);
    });

    test('an error status with message and metadata reaches the client', async () => {
      const { err } = await unary(client, { message: 'missing', failCode: grpc.status.NOT_FOUND });
      assert.equal(err?.code, grpc.status.NOT_FOUND);
      assert.equal(err?.details, 'failed: missing');
      assert.deepEqual(err?.metadata.get('x-error-detail'), ['detail for missing']);
    });

    test('a client cancel reaches the server', async () => {
      const call = client.ServerStream({ message: 'long', count: 1000, delayMs: 20 });
      const status = new Promise<grpc.ServiceError>((resolve) => call.on('error', resolve));
      await new Promise((resolve) => call.once('data', resolve));
      call.cancel();
      assert.equal((await status).code, grpc.status.CANCELLED);
      await waitFor(() => env.echo.cancelled.includes('ServerStream'), 'the server to see the cancel');
    });

    test('deadline exceeded', async () => {
      const { err } = await unary(client, { message: 'slow', delayMs: 2000 }, { deadline: Date.now() + 200 });
      assert.equal(err?.code, grpc.status.DEADLINE_EXCEEDED);
      await waitFor(() => env.echo.cancelled.includes('Unary'), 'the server to see the deadline');
    });
  });
}

grpcSuite('gRPC through H2Proxy (in-process)', async () => {
  const echo = await startEchoServer();
  const harness = await startProxyHarness({ connTarget: { host: '127.0.0.1', port: echo.port } });
  return {
    address: harness.address,
    echo,
    async close() {
      await harness.close();
      await echo.close();
    },
  };
});

describe('gRPC errors made by the proxy', () => {
  test('a dead upstream is UNAVAILABLE with trellis-proxy-error in the trailers', async (t) => {
    const placeholder = net.createServer();
    await new Promise<void>((resolve) => placeholder.listen(0, '127.0.0.1', resolve));
    const deadPort = (placeholder.address() as net.AddressInfo).port;
    await new Promise<void>((resolve) => placeholder.close(() => resolve()));
    const harness = await startProxyHarness({ connTarget: { host: '127.0.0.1', port: deadPort } });
    const client = createEchoClient(harness.address);
    t.after(async () => {
      client.close();
      await harness.close();
    });
    const { err } = await unary(client, { message: 'x' });
    assert.equal(err?.code, grpc.status.UNAVAILABLE);
    assert.deepEqual(err?.metadata.get('trellis-proxy-error'), ['connect-failed']);
  });
});

/** Starts `trellis proxy` for an app port; resolves with its inbound address once it is ready. */
async function startProxyProcess(appPort: number): Promise<{ inbound: string; child: ChildProcess }> {
  const child = spawn(
    process.execPath,
    [CLI, 'proxy', ...LOOPBACK_LISTENERS, '--app-port', String(appPort), '--log-level', 'warn'],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-4000)));
  try {
    const inbound = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('no ready line within 15 s')), 15_000);
      child.once('exit', (code) => reject(new Error(`proxy exited with ${code}`)));
      createInterface({ input: child.stdout! }).on('line', (line) => {
        try {
          const event = JSON.parse(line) as { event?: string; inbound?: string };
          if (event.event === 'ready' && typeof event.inbound === 'string') {
            clearTimeout(timer);
            resolve(event.inbound);
          }
        } catch {
          // not a JSON line
        }
      });
    });
    return { inbound, child };
  } catch (err) {
    child.kill('SIGKILL');
    throw new Error(`trellis proxy did not start: ${(err as Error).message}\n${stderr}`);
  }
}

async function stopProcess(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
  await exited;
  clearTimeout(timer);
}

grpcSuite('gRPC through the trellis proxy process (inbound)', async () => {
  const echo = await startEchoServer();
  try {
    const { inbound, child } = await startProxyProcess(echo.port);
    return {
      address: inbound,
      echo,
      async close() {
        await stopProcess(child);
        await echo.close();
      },
    };
  } catch (err) {
    await echo.close();
    throw err;
  }
});
