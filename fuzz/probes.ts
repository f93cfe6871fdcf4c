// Known-good requests, one per listener and path, made after every batch on fresh connections: a
// GET that must reach the app (or the admin's /ready) and come back 200 within the time limit,
// and, where the app answers, with the identity the app must have been told (`id=` for
// plaintext clients, the client proxy's identity through the mesh, the fuzzer's over its own
// mTLS). A probe that fails, hangs or gets the wrong identity is a finding.
import http2 from 'node:http2';
import net from 'node:net';
import tls from 'node:tls';
import { encodeTcpHeader } from '../src/proxy/mesh/protocol.ts';
import { MESH_SERVICE } from './context.ts';
import { PROBE_PATH } from './judge.ts';
import type { Mesh } from './mesh.ts';
import { MTLS_ALPN, type Channel, type ListenerName } from './plan.ts';

export interface ProbeResult {
  readonly name: string;
  readonly listener: ListenerName;
  readonly ok: boolean;
  /** What went wrong: "timeout", "status 502 (reason)", "identity ..." */
  readonly problem: string | null;
  readonly ms: number;
}

interface Answer {
  readonly status: number;
  readonly body: string;
  readonly error: string;
}

/** A probe that takes longer hangs (a healthy mesh answers in milliseconds). */
const TIMEOUT_MS = 2000;

function open(channel: Channel, port: number, mesh: Mesh): net.Socket {
  if (channel === 'plain') return net.connect({ host: '127.0.0.1', port });
  return tls.connect({
    host: '127.0.0.1',
    port,
    ...mesh.clientTls,
    ALPNProtocols: [MTLS_ALPN[channel]],
    minVersion: 'TLSv1.3',
    checkServerIdentity: () => undefined,
  });
}

/** One HTTP/1 request with Connection: close over a fresh socket; the answer read to the close. */
function http1(mesh: Mesh, channel: Channel, port: number, target: string, prefix?: Buffer): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const socket = open(channel, port, mesh);
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error('timeout'));
    }, TIMEOUT_MS);
    const request = `GET ${target} HTTP/1.1\r\nHost: ${target.startsWith('/') ? 'probe' : MESH_SERVICE}\r\nConnection: close\r\n\r\n`;
    socket.once(channel === 'plain' ? 'connect' : 'secureConnect', () =>
      socket.write(prefix === undefined ? request : Buffer.concat([prefix, Buffer.from(request)])),
    );
    socket.on('data', (d: Buffer) => chunks.push(d));
    socket.on('error', () => {});
    socket.on('close', () => {
      clearTimeout(timer);
      const text = Buffer.concat(chunks).toString('latin1');
      const m = /^HTTP\/1\.[01] (\d{3})/.exec(text);
      const headEnd = text.indexOf('\r\n\r\n');
      const error = /trellis-proxy-error: ([^\r\n]*)/i.exec(text)?.[1] ?? '';
      resolve({
        status: m === null ? 0 : Number(m[1]),
        body: headEnd === -1 ? '' : text.slice(headEnd + 4),
        error,
      });
    });
  });
}

/** One HTTP/2 GET over a fresh session (plaintext prior knowledge, or mTLS with a mesh ALPN). */
function h2(mesh: Mesh, channel: Channel, port: number, path: string): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const session = http2.connect(`http://127.0.0.1:${port}`, {
      createConnection: () => open(channel, port, mesh),
    });
    const timer = setTimeout(() => {
      session.destroy();
      reject(new Error('timeout'));
    }, TIMEOUT_MS);
    session.on('error', () => {});
    const req = session.request({ ':path': path, ':authority': MESH_SERVICE });
    let body = '';
    let status = 0;
    let error = '';
    req.setEncoding('utf8');
    req.on('response', (h) => {
      status = Number(h[':status']);
      error = String(h['trellis-proxy-error'] ?? '');
    });
    req.on('data', (d: string) => (body += d));
    const done = (err?: Error) => {
      clearTimeout(timer);
      session.close();
      if (status === 0 && err !== undefined) reject(err);
      else resolve({ status, body, error });
    };
    req.on('end', () => done());
    req.on('error', (e: Error) => done(e));
  });
}

interface Probe {
  readonly name: string;
  readonly listener: ListenerName;
  readonly ask: (mesh: Mesh, path: string) => Promise<Answer>;
  /** Bodies accepted (`id=...`), or null when only the status matters. */
  readonly bodies: (mesh: Mesh) => readonly string[] | null;
}

const L = (m: Mesh, l: ListenerName) => m.listeners[l];
const none = () => ['id='];

export const PROBES: readonly Probe[] = [
  {
    name: 'server-inbound http1',
    listener: 'server-inbound',
    ask: (m, p) => http1(m, 'plain', L(m, 'server-inbound'), p),
    bodies: none,
  },
  {
    name: 'server-inbound h2c',
    listener: 'server-inbound',
    ask: (m, p) => h2(m, 'plain', L(m, 'server-inbound'), p),
    bodies: none,
  },
  ...(['mtls-h2h1', 'mtls-h2', 'mtls-http1', 'mtls-tcp'] as const).map((channel): Probe => ({
    name: `server-inbound ${channel}`,
    listener: 'server-inbound',
    ask: (m, p) => {
      const port = L(m, 'server-inbound');
      if (channel === 'mtls-h2h1' || channel === 'mtls-h2') return h2(m, channel, port, p);
      return http1(m, channel, port, p, channel === 'mtls-tcp' ? encodeTcpHeader(port) : undefined);
    },
    // Over the opaque transport the app gets the bytes as sent: no identity header (today).
    bodies: (m) => (channel === 'mtls-tcp' ? ['id=', `id=${m.ids.fuzzer}`] : [`id=${m.ids.fuzzer}`]),
  })),
  {
    name: 'client-mesh http1',
    listener: 'client-mesh',
    ask: (m, p) => http1(m, 'plain', L(m, 'client-mesh'), p),
    bodies: (m) => [`id=${m.ids.client}`],
  },
  {
    name: 'client-mesh h2c',
    listener: 'client-mesh',
    ask: (m, p) => h2(m, 'plain', L(m, 'client-mesh'), p),
    bodies: (m) => [`id=${m.ids.client}`],
  },
  {
    name: 'client-outbound http1 (absolute-form to the mesh)',
    listener: 'client-outbound',
    ask: (m, p) => http1(m, 'plain', L(m, 'client-outbound'), `http://${MESH_SERVICE}${p}`),
    bodies: (m) => [`id=${m.ids.client}`],
  },
  {
    name: 'client-inbound http1',
    listener: 'client-inbound',
    ask: (m, p) => http1(m, 'plain', L(m, 'client-inbound'), p),
    bodies: none,
  },
  {
    name: 'server-outbound http1 (absolute-form to the app)',
    listener: 'server-outbound',
    ask: (m, p) => http1(m, 'plain', L(m, 'server-outbound'), `http://127.0.0.1:${m.ports.app}${p}`),
    bodies: none,
  },
  {
    name: 'server-admin /ready',
    listener: 'server-admin',
    ask: (m) => http1(m, 'plain', L(m, 'server-admin'), '/ready'),
    bodies: () => null,
  },
  {
    name: 'client-admin /ready',
    listener: 'client-admin',
    ask: (m) => http1(m, 'plain', L(m, 'client-admin'), '/ready'),
    bodies: () => null,
  },
];

let nonce = 0;

/** Runs every probe at once; returns their results. */
export async function probeAll(mesh: Mesh): Promise<ProbeResult[]> {
  const run = async (p: Probe): Promise<ProbeResult> => {
    const started = Date.now();
    const result = (problem: string | null): ProbeResult => ({
      name: p.name,
      listener: p.listener,
      ok: problem === null,
      problem,
      ms: Date.now() - started,
    });
    try {
      const a = await p.ask(mesh, `${PROBE_PATH}${++nonce}`);
      if (a.status !== 200)
        return result(a.status === 0 ? 'no HTTP answer' : `status ${a.status} ${a.error}`.trim());
      const want = p.bodies(mesh);
      if (want !== null && !want.includes(a.body))
        return result(`the app was told "${a.body}", expected ${want.join(' or ')}`);
      return result(null);
    } catch (err) {
      return result((err as Error).message);
    }
  };
  return Promise.all(PROBES.map(run));
}
