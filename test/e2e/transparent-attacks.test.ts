// Attacks on a pod in transparent mode, from another host that has no proxy of its own: the
// pod's iptables rules (`trellis init`) send every inbound TCP connection, whatever its port, to
// the proxy's inbound listener, which forwards it to the app on the port the client asked for.
// One of those ports is the proxy's own outbound listener (127.0.0.1:4140): a request forwarded
// there would go out again as the pod's own outbound traffic, to whatever its Host names, with the
// pod's identity (an open proxy for anyone who reaches the pod). Another is a port the app opened
// on loopback only, which forwarding to 127.0.0.1 would expose.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createNetns, linkNetns, netnsSkipReason } from './netns.ts';
import { MAIN, NODE, PROXY_UID, startTransparentProxy, startUntilReady } from '../helpers/transparent-pod.ts';

const ADDRESS_A = '198.18.0.1';
const ADDRESS_B = '198.18.0.2';
const APP_PORT = 8080;
const BYSTANDER_PORT = 7777;
const OUTBOUND_PORT = 4140;
const PRIVATE_PORT = 9999;

/** The pod's app: a public port, and a port it opened on loopback only (a debug port, say). */
const APP_SCRIPT = `
import http from 'node:http';
const web = http.createServer((req, res) => res.end('app:' + req.url + ' from ' + req.socket.remoteAddress));
await new Promise((r) => web.listen(${APP_PORT}, '0.0.0.0', r));
const debug = http.createServer((req, res) => res.end('private reached'));
await new Promise((r) => debug.listen(${PRIVATE_PORT}, '127.0.0.1', r));
process.stdout.write(JSON.stringify({ event: 'ready' }) + '\\n');
`;

/** A server on the attacker's side that nothing in pod B may be made to call: one line per connection. */
const BYSTANDER_SCRIPT = `
import net from 'node:net';
const s = net.createServer((c) => {
  process.stdout.write(JSON.stringify({ event: 'connection', from: c.remoteAddress }) + '\\n');
  c.on('error', () => {});
  c.end('HTTP/1.1 200 OK\\r\\ncontent-length: 18\\r\\nconnection: close\\r\\n\\r\\nbystander reached\\n');
});
await new Promise((r) => s.listen(${BYSTANDER_PORT}, '${ADDRESS_A}', r));
process.stdout.write(JSON.stringify({ event: 'ready' }) + '\\n');
`;

/** Sends each raw request on its own connection to ADDRESS_B:port; prints the answers as JSON. */
const ATTACKER_SCRIPT = `
import net from 'node:net';
const [port, ...requests] = JSON.parse(process.argv[1]);
setTimeout(() => { process.stderr.write('attacker timed out\\n'); process.exit(3); }, 15000).unref();
const answers = [];
for (const request of requests) {
  answers.push(await new Promise((resolve) => {
    let got = '';
    const c = net.connect(port, '${ADDRESS_B}', () => c.write(request));
    c.setEncoding('utf8').on('data', (d) => (got += d));
    c.on('error', (e) => (got += '[' + e.code + ']'));
    c.on('close', () => resolve(got));
    setTimeout(() => c.destroy(), 5000).unref();
  }));
}
process.stdout.write(JSON.stringify(answers));
`;

test('from outside the pod: its outbound port is no open proxy, a loopback-only port stays closed', async (t) => {
  const skip = netnsSkipReason(['iptables', 'iptables-save', 'iptables-restore', 'setpriv']);
  if (skip) return t.skip(skip);
  const attacker = createNetns(t, 'x');
  const pod = createNetns(t, 'p');
  linkNetns(attacker, `${ADDRESS_A}/30`, pod, `${ADDRESS_B}/30`);
  pod.run([NODE, MAIN, 'init', '--proxy-uid', `${PROXY_UID}`]);

  const app = await startUntilReady(pod, 'app', [NODE, '--input-type=module', '-e', APP_SCRIPT]);
  const bystander = await startUntilReady(attacker, 'bystander', [
    NODE,
    '--input-type=module',
    '-e',
    BYSTANDER_SCRIPT,
  ]);
  const proxy = await startTransparentProxy(pod, 'proxy');
  const logs = () => [proxy.logs(), app.logs(), bystander.logs()].join('\n');

  const send = (port: number, requests: string[]): string[] => {
    const r = attacker.exec([
      NODE,
      '--input-type=module',
      '-e',
      ATTACKER_SCRIPT,
      JSON.stringify([port, ...requests]),
    ]);
    assert.equal(r.status, 0, `attacker failed: ${r.stderr}\n${logs()}`);
    return JSON.parse(r.stdout) as string[];
  };

  const get = (path: string) => `GET ${path} HTTP/1.1\r\nHost: ${ADDRESS_B}\r\nConnection: close\r\n\r\n`;

  // The app's own port works through the proxy (the rules are in place), and the app sees the
  // pod's address as its caller, not loopback (which apps tend to trust).
  const [normal] = send(APP_PORT, [get('/hello')]);
  assert.match(
    normal!,
    /^HTTP\/1\.1 200 [\s\S]*app:\/hello from (::ffff:)?198\.18\.0\.2$/,
    `${normal}\n${logs()}`,
  );

  // The loopback-only port: before the mesh, a refused connection; through the proxy, the same
  // (it forwarded to 127.0.0.1, so anyone who reached the pod reached the debug port).
  const [hidden] = send(PRIVATE_PORT, [get('/debug')]);
  assert.doesNotMatch(hidden!, /private reached/, `${hidden}\n${logs()}`);
  assert.doesNotMatch(hidden!, /^HTTP\/1\.1 2/, `${hidden}\n${logs()}`);

  // The proxy's outbound port, asked to go elsewhere by Host, by an absolute-form URI, by CONNECT.
  const bystander_ = `${ADDRESS_A}:${BYSTANDER_PORT}`;
  const answers = send(OUTBOUND_PORT, [
    `GET /stolen HTTP/1.1\r\nHost: ${bystander_}\r\nConnection: close\r\n\r\n`,
    `GET http://${bystander_}/stolen HTTP/1.1\r\nHost: ${bystander_}\r\nConnection: close\r\n\r\n`,
    `CONNECT ${bystander_} HTTP/1.1\r\nHost: ${bystander_}\r\n\r\n`,
  ]);
  for (const answer of answers) {
    assert.doesNotMatch(answer, /bystander reached/, `${answer}\n${logs()}`);
    assert.doesNotMatch(answer, /^HTTP\/1\.1 2/, `${answer}\n${logs()}`);
  }
  const reached = bystander.lines.filter((l) => l.includes('"connection"'));
  assert.deepEqual(reached, [], `the bystander was reached through the pod\n${logs()}`);
});
