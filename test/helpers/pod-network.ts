// A node's pod network for tests (test/helpers/pod-runner.ts runs pods on it): a "node" network
// namespace with a bridge at 198.18.0.1/24, and one network namespace per pod joined to the bridge
// by a veth pair (`eth0` in the pod, an address 198.18.0.N/24 and a default route via the node),
// as a bridge CNI plugin wires pods. The test process stays in the host's namespace, so a small
// agent in the node namespace reaches across through a Unix socket (path sockets are not bound to
// a network namespace): the test opens TCP connections into the pod network through it (probes,
// metrics), and it listens on node addresses and forwards what arrives to a loopback address of
// the host (kube-proxy's job for a Service whose pod runs in the host's network, such as the
// control plane here). Everything is deleted when the test ends; nothing is added to the host's
// own network namespace.
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { request } from 'node:http';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import type { TestContext } from 'node:test';
import { createNetns, type Netns } from '../e2e/netns.ts';

const NODE = process.execPath;
export const NODE_ADDRESS = '198.18.0.1';
const PREFIX = '198.18.0.';

// The agent: one line names what a connection to its socket is for, then bytes are relayed.
//   CONNECT HOST PORT          the rest of the connection goes to HOST:PORT
//   LISTEN HOST PORT SOCKET    listen on HOST:PORT; each connection goes to the Unix SOCKET
// (answers "ok\n" or "error MESSAGE\n").
const AGENT_SCRIPT = (socket: string) => `
import net from 'node:net';
const relay = (a, b) => {
  a.on('error', () => b.destroy()); b.on('error', () => a.destroy());
  a.on('close', () => b.destroy()); b.on('close', () => a.destroy());
  a.pipe(b).pipe(a);
};
const agent = net.createServer((c) => {
  let head = Buffer.alloc(0);
  c.on('error', () => {});
  const onData = (d) => {
    head = Buffer.concat([head, d]);
    const nl = head.indexOf(10);
    if (nl < 0) { if (head.length > 1024) c.destroy(); return; }
    c.off('data', onData);
    c.pause();
    const [verb, host, port, path] = head.subarray(0, nl).toString().split(' ');
    const rest = head.subarray(nl + 1);
    if (verb === 'CONNECT') {
      const up = net.connect(Number(port), host, () => { up.write(rest); relay(c, up); });
      up.on('error', () => c.destroy());
    } else if (verb === 'LISTEN') {
      net.createServer((incoming) => relay(incoming, net.connect(path)))
        .on('error', (e) => c.end('error ' + e.message + '\\n'))
        .listen(Number(port), host, () => c.write('ok\\n'));
    } else c.destroy();
  };
  c.on('data', onData);
});
agent.listen(${JSON.stringify(socket)}, () => process.stdout.write('{"event":"ready"}\\n'));
`;

export interface PodNetwork {
  /** The node's namespace (the bridge, the agent). */
  readonly node: Netns;
  /** A new pod namespace on the bridge, with the next free address. */
  addPod(tag: string): { ns: Netns; ip: string };
  /** A TCP connection from the test process to HOST:PORT of the pod network. */
  connect(host: string, port: number): Socket;
  /** An HTTP GET into the pod network (what the kubelet's probes and a metrics scrape do). */
  get(
    host: string,
    port: number,
    path: string,
    timeoutMs?: number,
  ): Promise<{ status: number; body: string }>;
  /**
   * Connections to HOST:PORT of the node (HOST is made one of its addresses) are forwarded to
   * `target`, HOST:PORT on the host's loopback.
   */
  expose(host: string, port: number, target: { host: string; port: number }): Promise<void>;
}

function relay(a: Socket, b: Socket): void {
  a.on('error', () => b.destroy());
  b.on('error', () => a.destroy());
  a.on('close', () => b.destroy());
  b.on('close', () => a.destroy());
  a.pipe(b).pipe(a);
}

/** A node with its bridge and agent; pods are added with addPod. All of it goes when the test ends. */
export async function createPodNetwork(t: TestContext): Promise<PodNetwork> {
  const dir = await mkdtemp(join(tmpdir(), 'trellis-node-'));
  const servers: Server[] = [];
  t.after(async () => {
    for (const server of servers) server.close();
    await rm(dir, { recursive: true, force: true });
  });
  const node = createNetns(t, 'node');
  node.run(['ip', 'link', 'add', 'br0', 'type', 'bridge']);
  node.run(['ip', 'addr', 'add', `${NODE_ADDRESS}/24`, 'dev', 'br0']);
  node.run(['ip', 'link', 'set', 'br0', 'up']);
  const agentSocket = join(dir, 'agent.sock');
  const agent = node.spawn([NODE, '--input-type=module', '-e', AGENT_SCRIPT(agentSocket)]);
  let agentErrors = '';
  agent.stderr!.setEncoding('utf8').on('data', (d: string) => (agentErrors = (agentErrors + d).slice(-4000)));
  await new Promise<void>((resolve, reject) => {
    createInterface({ input: agent.stdout! }).once('line', () => resolve());
    agent.once('exit', (code) => reject(new Error(`the node agent exited (${code}): ${agentErrors}`)));
  });

  let next = 2;
  const connect = (host: string, port: number): Socket => {
    const socket = createConnection(agentSocket);
    socket.write(`CONNECT ${host} ${port}\n`);
    return socket;
  };
  return {
    node,
    addPod(tag) {
      const ns = createNetns(t, tag);
      const ip = `${PREFIX}${next}`;
      const hostSide = `veth${next}`;
      next += 1;
      node.run(['ip', 'link', 'add', hostSide, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns.name]);
      node.run(['ip', 'link', 'set', hostSide, 'master', 'br0', 'up']);
      ns.run(['ip', 'addr', 'add', `${ip}/24`, 'dev', 'eth0']);
      ns.run(['ip', 'link', 'set', 'eth0', 'up']);
      ns.run(['ip', 'route', 'add', 'default', 'via', NODE_ADDRESS]);
      return { ns, ip };
    },
    connect,
    get(host, port, path, timeoutMs = 3000) {
      return new Promise((resolve, reject) => {
        const req = request(
          // No `agent` option: with one, Node would connect by itself, from the host's network.
          { host, port, path, createConnection: () => connect(host, port), timeout: timeoutMs },
          (res) => {
            let body = '';
            res.setEncoding('utf8').on('data', (d: string) => (body += d));
            res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
            res.on('error', reject);
          },
        );
        req.on('timeout', () => req.destroy(new Error(`GET http://${host}:${port}${path} timed out`)));
        req.on('error', reject);
        req.end();
      });
    },
    async expose(host, port, target) {
      // A virtual IP (a ClusterIP) becomes an address of the node, which pods route to.
      if (host !== NODE_ADDRESS && !node.run(['ip', '-o', 'addr', 'show', 'dev', 'lo']).includes(` ${host}/`))
        node.run(['ip', 'addr', 'add', `${host}/32`, 'dev', 'lo']);
      const path = join(dir, `expose-${servers.length}.sock`);
      const server = createServer((incoming) => relay(incoming, createConnection(target.port, target.host)));
      servers.push(server);
      await new Promise<void>((resolve) => server.listen(path, resolve));
      const control = createConnection(agentSocket);
      t.after(() => control.destroy());
      control.write(`LISTEN ${host} ${port} ${path}\n`);
      const [answer] = (await new Promise((resolve, reject) => {
        control.once('data', (d: Buffer) => resolve([d.toString().trim()]));
        control.once('error', reject);
      })) as [string];
      if (answer !== 'ok') throw new Error(`the node cannot listen on ${host}:${port}: ${answer}`);
    },
  };
}
