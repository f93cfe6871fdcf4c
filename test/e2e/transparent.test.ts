// Transparent interception end to end: two "pods" (network namespaces joined by a veth pair), each
// with a Trellis proxy running as its own uid behind the rules of `trellis init`. A client app in
// pod A talks plain HTTP and raw TCP to an app in pod B with no proxy settings at all; the test
// checks the answers and that both proxies carried the traffic (their /metrics counters grew).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createNetns, linkNetns, netnsSkipReason, type Netns } from './netns.ts';
import { MAIN, NODE, PROXY_UID, startTransparentProxy, startUntilReady } from '../helpers/transparent-pod.ts';

const ADDRESS_A = '198.18.0.1';
const ADDRESS_B = '198.18.0.2';
const HTTP_PORT = 8080;
const ECHO_PORT = 7070;
const ECHO_MESSAGE = 'raw bytes through two proxies\n';

const APP_SCRIPT = `
import http from 'node:http';
import net from 'node:net';
const web = http.createServer((req, res) => {
  res.setHeader('content-type', 'application/json');
  res.end(JSON.stringify({ path: req.url, peer: req.socket.remoteAddress }));
});
const echo = net.createServer((s) => s.on('error', () => {}).pipe(s));
await new Promise((r) => web.listen(${HTTP_PORT}, '0.0.0.0', r));
await new Promise((r) => echo.listen(${ECHO_PORT}, '0.0.0.0', r));
process.stdout.write(JSON.stringify({ event: 'ready' }) + '\\n');
`;

const CLIENT_SCRIPT = `
import http from 'node:http';
import net from 'node:net';
setTimeout(() => { process.stderr.write('client timed out\\n'); process.exit(3); }, 15000).unref();
const web = await new Promise((resolve, reject) => {
  http.get({ host: '${ADDRESS_B}', port: ${HTTP_PORT}, path: '/hello', agent: false }, (res) => {
    let body = '';
    res.setEncoding('utf8').on('data', (d) => (body += d)).on('end', () => resolve({ status: res.statusCode, body }));
  }).on('error', reject);
});
const echoed = await new Promise((resolve, reject) => {
  let got = '';
  const c = net.connect(${ECHO_PORT}, '${ADDRESS_B}', () => c.write(${JSON.stringify(ECHO_MESSAGE)}));
  c.setEncoding('utf8').on('error', reject).on('close', () => resolve(got));
  c.on('data', (d) => { got += d; if (got.length >= ${ECHO_MESSAGE.length}) c.end(); });
});
process.stdout.write(JSON.stringify({ web, echoed }));
`;

const METRICS_SCRIPT = `
const res = await fetch('http://127.0.0.1:4191/metrics', { signal: AbortSignal.timeout(5000) });
process.stdout.write(await res.text());
`;

/** The sum of a counter's samples whose labels include `direction="<direction>"`. */
function counter(metrics: string, name: string, direction: string): number {
  let sum = 0;
  for (const m of metrics.matchAll(new RegExp(`^${name}\\{([^}]*)\\} (\\S+)$`, 'gm'))) {
    if (m[1]!.includes(`direction="${direction}"`)) sum += Number(m[2]);
  }
  return sum;
}

function scrape(ns: Netns): string {
  return ns.run([NODE, '--input-type=module', '-e', METRICS_SCRIPT]);
}

test('an app reaches another pod through both proxies with no proxy settings', async (t) => {
  const skip = netnsSkipReason(['iptables', 'iptables-save', 'iptables-restore', 'setpriv']);
  if (skip) return t.skip(skip);
  const podA = createNetns(t, 'a');
  const podB = createNetns(t, 'b');
  linkNetns(podA, `${ADDRESS_A}/30`, podB, `${ADDRESS_B}/30`);
  for (const pod of [podA, podB]) pod.run([NODE, MAIN, 'init', '--proxy-uid', `${PROXY_UID}`]);

  const app = await startUntilReady(podB, 'app B', [NODE, '--input-type=module', '-e', APP_SCRIPT]);
  const proxyA = await startTransparentProxy(podA, 'proxy A');
  const proxyB = await startTransparentProxy(podB, 'proxy B');
  const logs = () => [proxyA.logs(), proxyB.logs(), app.logs()].join('\n');

  const before = { a: scrape(podA), b: scrape(podB) };
  const client = podA.exec([NODE, '--input-type=module', '-e', CLIENT_SCRIPT]);
  assert.equal(client.status, 0, `client failed: ${client.stderr}\n${logs()}`);
  const { web, echoed } = JSON.parse(client.stdout) as {
    web: { status: number; body: string };
    echoed: string;
  };
  assert.equal(web.status, 200, `HTTP answer ${web.status} ${web.body}\n${logs()}`);
  const served = JSON.parse(web.body) as { path: string; peer: string };
  assert.equal(served.path, '/hello');
  assert.notEqual(served.peer, ADDRESS_A, 'the app in B saw the client directly, not its proxy');
  assert.equal(echoed, ECHO_MESSAGE);

  const after = { a: scrape(podA), b: scrape(podB) };
  const grew = (pod: 'a' | 'b', name: string, direction: string) =>
    counter(after[pod], name, direction) - counter(before[pod], name, direction);
  assert.ok(grew('a', 'trellis_request_total', 'outbound') >= 1, `proxy A outbound requests\n${after.a}`);
  assert.ok(grew('b', 'trellis_request_total', 'inbound') >= 1, `proxy B inbound requests\n${after.b}`);
  // The raw TCP exchange is not HTTP: it shows up as a second accepted connection on each side.
  assert.ok(grew('a', 'trellis_tcp_open_total', 'outbound') >= 2, `proxy A outbound connections\n${after.a}`);
  assert.ok(grew('b', 'trellis_tcp_open_total', 'inbound') >= 2, `proxy B inbound connections\n${after.b}`);
});
