// Executes connection plans against a listener: connects (plain TCP, or mutual TLS with the
// fuzzer's test identity and the plan's ALPN), performs the steps (writes, waits, half-close),
// reads and discards what comes back (unless the plan says not to), then lingers briefly for the
// proxy to answer or close. A few plans run at once; every plan and the whole batch are bounded
// in time. Inputs are counted only when the proxy has read them: HTTP/1 requests up to the number
// of responses that came back, HTTP/2 frames when the PING after them is acknowledged, ClientHellos
// and opaque chunks when written while the connection is open.
import net from 'node:net';
import tls from 'node:tls';
import { MTLS_ALPN, type Channel, type ConnPlan } from './plan.ts';

export interface ClientTls {
  readonly key: string;
  readonly cert: string;
  readonly ca: string;
}

export interface SendStats {
  inputs: number;
  flood: number;
  connections: number;
  /** Connections that could not be made (refused, or the mTLS handshake failed). */
  failedConnects: number;
  /** mTLS connections whose handshake failed or agreed another ALPN protocol. */
  failedHandshakes: number;
  bytesReceived: number;
  /** Plans cut short by their time limit. */
  timedOut: number;
  /** Inputs written but not counted: never answered (HTTP/1) or acknowledged (HTTP/2). */
  uncounted: number;
  /** PINGs whose ACK did not come within PING_WAIT_MS while the connection stayed open. */
  pingTimeouts: number;
}

/** A valid request (by construction) that a proxy refused. */
export interface Refusal {
  readonly plan: number;
  readonly request: number;
  readonly status: number;
  /** The proxy's reason (trellis-proxy-error) and the start of its answer's body. */
  readonly reason: string;
}

/** Statuses with which a proxy refuses a request as malformed or too large. */
const REFUSALS: ReadonlySet<number> = new Set([400, 414, 431, 501, 505]);
const MAX_REFUSALS = 200;

export interface SendOptions {
  readonly port: number;
  readonly tls: ClientTls;
  readonly concurrency: number;
  /** After the last step: wait this long without bytes (or for the close) before hanging up. */
  readonly lingerMs: number;
  readonly planTimeoutMs: number;
}

export interface BatchResult {
  readonly stats: SendStats;
  readonly refusals: Refusal[];
}

export function emptyStats(): SendStats {
  return {
    inputs: 0,
    flood: 0,
    connections: 0,
    failedConnects: 0,
    failedHandshakes: 0,
    bytesReceived: 0,
    timedOut: 0,
    uncounted: 0,
    pingTimeouts: 0,
  };
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

function connect(channel: Channel, port: number, creds: ClientTls): Promise<net.Socket | null> {
  return new Promise((resolve) => {
    let socket: net.Socket;
    const done = (ok: boolean) => {
      clearTimeout(timer);
      socket.removeAllListeners('error');
      socket.on('error', () => {});
      if (!ok) socket.destroy();
      resolve(ok ? socket : null);
    };
    const timer = setTimeout(() => done(false), 5000);
    if (channel === 'plain') {
      socket = net.connect({ host: '127.0.0.1', port, noDelay: true }, () => done(true));
    } else {
      const alpn = MTLS_ALPN[channel];
      const s = tls.connect(
        {
          host: '127.0.0.1',
          port,
          key: creds.key,
          cert: creds.cert,
          ca: creds.ca,
          ALPNProtocols: [alpn],
          minVersion: 'TLSv1.3',
          checkServerIdentity: () => undefined,
        },
        () => done(s.alpnProtocol === alpn),
      );
      socket = s;
    }
    socket.once('error', () => done(false));
  });
}

const PING_WAIT_MS = 1000;
const MAX_RESPONSE_TEXT = 512 * 1024;
const RESPONSE_HEAD = /HTTP\/1\.[01] ([1-9][0-9][0-9])[^\r\n]*\r\n((?:[^\r\n]*\r\n)*?)\r\n/y;

/** Watches what a connection receives: HTTP/1 responses (in order), and the PING ACK awaited. */
class Receiver {
  /** HTTP/1 final responses (1xx but 101 are interim): status and the proxy's reason, if it made it. */
  readonly finals: { status: number; reason: string }[] = [];
  lastData = Date.now();
  private carry = Buffer.alloc(0);
  private text = '';
  private parsed = 0;
  private awaited: { ack: Buffer; done: (ok: boolean) => void } | null = null;

  get responses(): number {
    return this.finals.length;
  }

  onData(d: Buffer, countResponses: boolean): void {
    this.lastData = Date.now();
    if (countResponses && this.text.length < MAX_RESPONSE_TEXT) {
      this.text += d.latin1Slice(0, d.length);
      this.readResponses();
    }
    if (this.awaited === null) return;
    const view = this.carry.length === 0 ? d : Buffer.concat([this.carry, d]);
    if (view.includes(this.awaited.ack)) this.settle(true);
    this.carry = Buffer.from(view.subarray(Math.max(0, view.length - 32)));
  }

  /** Response heads, in order: the app's bodies are short `id=` lines, never a status line. */
  private readResponses(): void {
    for (;;) {
      const at = this.text.indexOf('HTTP/1.', this.parsed);
      if (at === -1) return;
      RESPONSE_HEAD.lastIndex = at;
      const m = RESPONSE_HEAD.exec(this.text);
      if (m === null) return; // not whole yet
      this.parsed = RESPONSE_HEAD.lastIndex;
      const status = Number(m[1]);
      if (status < 200 && status !== 101) continue; // interim; a 101 answers an upgrade offer
      const error = /^trellis-proxy-error: ?(.*)$/im.exec(m[2]!)?.[1] ?? '';
      const body = this.text
        .slice(this.parsed, this.parsed + 100)
        .split('HTTP/1.')[0]!
        .trim();
      this.finals.push({ status, reason: error === '' ? '' : `${error}: ${body}` });
    }
  }

  /** Resolves true when `ack` arrives, false on close or after `ms`. */
  await(ack: Buffer, ms: number, socket: net.Socket): Promise<boolean> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => this.settle(false), ms);
      const onClose = () => this.settle(false);
      socket.once('close', onClose);
      this.awaited = {
        ack,
        done: (ok) => {
          clearTimeout(timer);
          socket.off('close', onClose);
          resolve(ok);
        },
      };
    });
  }

  private settle(ok: boolean): void {
    const a = this.awaited;
    this.awaited = null;
    a?.done(ok);
  }
}

/** Writes `bytes`; waits for the drain (or the close, or the deadline) under backpressure. */
async function write(socket: net.Socket, bytes: Buffer, deadline: number): Promise<void> {
  if (socket.write(bytes)) return;
  await new Promise<void>((resolve) => {
    const t = setTimeout(finish, Math.max(0, deadline - Date.now()));
    function finish(): void {
      clearTimeout(t);
      socket.off('drain', finish);
      socket.off('close', finish);
      resolve();
    }
    socket.once('drain', finish);
    socket.once('close', finish);
  });
}

/** Runs plan number `index`; adds to `out`. */
async function runPlan(plan: ConnPlan, index: number, opts: SendOptions, out: BatchResult): Promise<void> {
  const { stats } = out;
  const connected = await connect(plan.channel, opts.port, opts.tls);
  if (connected === null) {
    stats.failedConnects++;
    if (plan.channel !== 'plain') stats.failedHandshakes++;
    return;
  }
  const socket = connected;
  stats.connections++;
  let closed = false;
  socket.once('close', () => (closed = true));
  const rx = new Receiver();
  const countResponses = plan.countResponses === true;
  if (plan.noRead) socket.pause();
  else
    socket.on('data', (d: Buffer) => {
      stats.bytesReceived += d.length;
      rx.onData(d, countResponses);
    });
  const deadline = Date.now() + opts.planTimeoutMs;
  const timedOut = () => Date.now() > deadline;
  let written = 0;
  let acked = 0;
  let pinged = 0;
  try {
    for (const step of plan.steps) {
      if (closed || timedOut()) break;
      if ('write' in step) {
        written += step.inputs;
        stats.flood += step.flood ?? 0;
        await write(socket, step.write, deadline);
      } else if ('ping' in step) {
        const ack = rx.await(step.ack, Math.min(PING_WAIT_MS, Math.max(0, deadline - Date.now())), socket);
        await write(socket, step.ping, deadline);
        pinged += step.inputs;
        if (await ack) acked += step.inputs;
        else {
          // Closed, or stuck: what follows would not be read either.
          if (!closed) stats.pingTimeouts++;
          break;
        }
      } else if ('waitMs' in step) await sleep(Math.min(step.waitMs, Math.max(0, deadline - Date.now())));
      else socket.end();
    }
    rx.lastData = Math.max(rx.lastData, Date.now());
    // HTTP/1: until every request is answered (or the proxy goes quiet); HTTP/2: its PINGs
    // already showed that every frame was read; else a short linger.
    const byPing = plan.steps.some((s) => 'ping' in s);
    // A busy proxy may be slow to answer valid requests (1 s of quiet is allowed then); once they
    // are answered, a broken last request gets a short wait (it may never be answered).
    const valid = plan.validRequests?.filter(Boolean).length ?? 0;
    const quietMs = () =>
      countResponses
        ? rx.responses < valid
          ? 1000
          : Math.max(opts.lingerMs, 200)
        : byPing
          ? 0
          : opts.lingerMs;
    const answered = () => countResponses && rx.responses >= written;
    while (!closed && !timedOut() && !answered() && Date.now() - rx.lastData < quietMs()) await sleep(10);
    if (timedOut() && !closed) stats.timedOut++;
  } finally {
    socket.destroy();
    const counted = (countResponses ? Math.min(written, rx.responses) : written) + acked;
    stats.inputs += counted;
    stats.uncounted += written + pinged - counted;
    rx.finals.forEach((r, i) => {
      if (
        plan.validRequests?.[i] === true &&
        REFUSALS.has(r.status) &&
        r.reason !== '' &&
        out.refusals.length < MAX_REFUSALS
      )
        out.refusals.push({ plan: index, request: i, status: r.status, reason: r.reason });
    });
  }
}

/** Runs `plans` with at most `concurrency` at once; resolves when all are done. */
export async function runPlans(plans: readonly ConnPlan[], opts: SendOptions): Promise<BatchResult> {
  const out: BatchResult = { stats: emptyStats(), refusals: [] };
  let next = 0;
  const worker = async () => {
    while (next < plans.length) {
      const i = next++;
      await runPlan(plans[i]!, i, opts, out);
    }
  };
  await Promise.all(Array.from({ length: Math.min(opts.concurrency, plans.length) }, worker));
  return out;
}
