// What a caller can hold of the control plane's gRPC port (src/control/grpc-listener.ts), with a
// real control plane on loopback. Before, grpc-js kept every connection for as long as the caller
// liked, one that never sent a byte included: 2,000 silent connections were all still open after
// 15 s, so a caller could hold them until the process ran out of file descriptors.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import { once } from 'node:events';
import * as grpc from '@grpc/grpc-js';
import { loadDestinationApi } from '../../src/api/load.ts';
import type { GrpcConnectionLimits } from '../../src/control/grpc-listener.ts';
import { startStateControlPlane } from '../helpers/state-control-plane.ts';

const PREFACE = Buffer.concat([
  Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1'),
  Buffer.from([0, 0, 0, 4, 0, 0, 0, 0, 0]), // an empty SETTINGS frame
]);

async function startPlane(t: { after(fn: () => unknown): void }, grpcLimits: Partial<GrpcConnectionLimits>) {
  const { plane, grpcPort } = await startStateControlPlane(t, () => ({ grpcLimits }));
  return { plane, port: grpcPort };
}

/** A raw connection from `from` that reads (and drops) what it is sent, optionally with the preface. */
async function open(port: number, from: string, preface: boolean): Promise<Socket> {
  const socket = connect({ port, host: '127.0.0.1', localAddress: from });
  socket.on('error', () => {});
  socket.resume();
  await once(socket, 'connect');
  if (preface) socket.write(PREFACE);
  return socket;
}

/** Whether `s` is closed within `ms`. */
function closedWithin(s: Socket, ms: number): Promise<boolean> {
  if (s.destroyed) return Promise.resolve(true);
  return Promise.race([
    once(s, 'close').then(() => true),
    new Promise<boolean>((r) => setTimeout(() => r(false), ms)),
  ]);
}

async function closedMetric(http: string, reason: string): Promise<number> {
  const text = await (await fetch(`http://${http}/metrics`)).text();
  const line = text
    .split('\n')
    .find((l) => l.startsWith(`trellis_control_grpc_connections_closed_total{reason="${reason}"}`));
  return line === undefined ? NaN : Number(line.slice(line.lastIndexOf(' ') + 1));
}

test('a gRPC connection that sends nothing is closed; one without a call is closed once idle; calls still work', async (t) => {
  const { plane, port } = await startPlane(t, { firstBytesMs: 300, idleMs: 600 });
  const silent = await open(port, '127.0.0.1', false);
  const talking = await open(port, '127.0.0.1', true);
  t.after(() => [silent, talking].forEach((s) => s.destroy()));
  assert.ok(await closedWithin(silent, 3000), 'the silent connection is closed');
  assert.equal(talking.destroyed, false, 'the one that sent its preface is not (yet)');
  assert.ok(await closedWithin(talking, 3000), 'the connection without a call is closed once idle');
  assert.equal(await closedMetric(plane.http, 'silent'), 1);

  // A real client is served on the same port.
  const api = loadDestinationApi();
  const client = new api.Destination(plane.grpc, grpc.credentials.createInsecure()) as grpc.Client & {
    Watch(req: unknown): grpc.ClientReadableStream<unknown>;
  };
  t.after(() => client.close());
  const call = client.Watch({ path: 'web.default.svc.cluster.local:80' });
  call.on('error', () => {});
  await once(call, 'data');
  call.cancel();
});

test('an address that holds every gRPC connection does not keep another one out', async (t) => {
  const { plane, port } = await startPlane(t, { maxConnections: 8 });
  const attacker: Socket[] = [];
  for (let i = 0; i < 8; i++) attacker.push(await open(port, '127.0.0.2', true));
  t.after(() => attacker.forEach((s) => s.destroy()));
  const other = await open(port, '127.0.0.1', true);
  t.after(() => other.destroy());
  assert.ok(await closedWithin(attacker[0]!, 2000), "the attacker's oldest connection made room");
  assert.equal(await closedWithin(other, 300), false, 'the other address keeps its connection');
  const more = await open(port, '127.0.0.2', true);
  assert.ok(await closedWithin(more, 2000), 'the address holding the most is refused another one');
  assert.equal(attacker.slice(1).filter((s) => s.destroyed).length, 0);
  assert.equal(await closedMetric(plane.http, 'cap'), 2);
});
