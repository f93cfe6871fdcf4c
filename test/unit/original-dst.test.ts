// getOriginalDst(): null (never a throw) for connections nobody redirected, the sockaddr decoding,
// and, as root in a fresh network namespace, the real original destination after a REDIRECT.
import assert from 'node:assert/strict';
import net from 'node:net';
import os from 'node:os';
import { test } from 'node:test';
import { decodeSockaddr, getOriginalDst } from '../../src/proxy/transport/original-dst.ts';
import { createNetns, netnsSkipReason } from '../e2e/netns.ts';

function hostOrder16(value: number): Buffer {
  const b = Buffer.alloc(2);
  if (os.endianness() === 'LE') b.writeUInt16LE(value);
  else b.writeUInt16BE(value);
  return b;
}

test('decodes a sockaddr_in: family in host order, port and address in network order', () => {
  const buf = Buffer.alloc(16);
  hostOrder16(2).copy(buf, 0);
  buf.writeUInt16BE(8080, 2);
  Buffer.from([198, 18, 0, 2]).copy(buf, 4);
  assert.deepEqual(decodeSockaddr(buf, 16), { host: '198.18.0.2', port: 8080 });
});

test('decodes a sockaddr_in6, IPv4-mapped addresses as dotted IPv4', () => {
  const buf = Buffer.alloc(28);
  hostOrder16(10).copy(buf, 0);
  buf.writeUInt16BE(443, 2);
  buf[23] = 1; // ::1
  assert.deepEqual(decodeSockaddr(buf, 28), { host: '::1', port: 443 });
  buf.fill(0, 8, 24);
  buf.writeUInt16BE(0xffff, 18);
  Buffer.from([198, 18, 0, 1]).copy(buf, 20);
  assert.deepEqual(decodeSockaddr(buf, 28), { host: '198.18.0.1', port: 443 });
});

test('a sockaddr of an unknown family or too short decodes to null', () => {
  const buf = Buffer.alloc(16);
  hostOrder16(1).copy(buf, 0); // AF_UNIX
  assert.equal(decodeSockaddr(buf, 16), null);
  hostOrder16(2).copy(buf, 0);
  assert.equal(decodeSockaddr(buf, 4), null);
});

test('a plain loopback connection was not redirected: null on both ends, no throw', async (t) => {
  const accepted = Promise.withResolvers<net.Socket>();
  const server = net.createServer((s) => accepted.resolve(s));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => server.close());
  const client = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1');
  t.after(() => client.destroy());
  await new Promise((resolve) => client.once('connect', resolve));
  const socket = await accepted.promise;
  t.after(() => socket.destroy());
  assert.equal(getOriginalDst(socket), null);
  assert.equal(getOriginalDst(client), null);
  socket.destroy();
  assert.equal(getOriginalDst(socket), null, 'a destroyed socket has no fd');
});

test('a socket that never connected gives null', () => {
  assert.equal(getOriginalDst(new net.Socket()), null);
});

// Runs inside the namespace: a dual-stack server on [::]:4143 reports getOriginalDst() for each
// connection; clients dial a redirected IPv4 address, a redirected [::1] port and the port itself.
const CHILD_SCRIPT = `
import net from 'node:net';
const { getOriginalDst } = await import(${JSON.stringify(new URL('../../src/proxy/transport/original-dst.ts', import.meta.url).href)});
const results = [];
const server = net.createServer((s) => { results.push(getOriginalDst(s)); s.end(); });
await new Promise((r) => server.listen({ port: 4143, host: '::', ipv6Only: false }, r));
for (const [host, port] of [['198.18.0.9', 8080], ['::1', 9090], ['127.0.0.1', 4143]]) {
  await new Promise((resolve, reject) => {
    const c = net.connect({ host, port }, () => {});
    c.setTimeout(5000, () => reject(new Error('timeout ' + host)));
    c.on('error', reject).on('close', resolve).resume();
  });
}
server.close();
process.stdout.write(JSON.stringify(results));
`;

test('after an iptables REDIRECT it returns the original destination (IPv4, IPv6)', async (t) => {
  const skip = netnsSkipReason(['iptables', 'ip6tables']);
  if (skip) return t.skip(skip);
  const ns = createNetns(t, 'odst');
  ns.run(['ip', 'addr', 'add', '198.18.0.9/32', 'dev', 'lo']);
  const redirect = ['-t', 'nat', '-A', 'OUTPUT', '-p', 'tcp', '-j', 'REDIRECT', '--to-ports', '4143'];
  ns.run(['iptables', ...redirect.slice(0, 6), '-d', '198.18.0.9', '--dport', '8080', ...redirect.slice(6)]);
  ns.run(['ip6tables', ...redirect.slice(0, 6), '-d', '::1', '--dport', '9090', ...redirect.slice(6)]);
  const out = ns.run([process.execPath, '--input-type=module', '-e', CHILD_SCRIPT]);
  assert.deepEqual(JSON.parse(out), [{ host: '198.18.0.9', port: 8080 }, { host: '::1', port: 9090 }, null]);
});
