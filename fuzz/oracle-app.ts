// The app behind both proxies, which records what reaches it. A connection is HTTP/2 when it
// starts with the preface (served by node:http2, which gives the fields exactly as received),
// HTTP/1 when its first bytes after any empty lines are a request line, as the proxy's own
// detection would say, and opaque otherwise (bytes counted, nothing else: a real app would not
// read a header in a stream that does not start as HTTP). HTTP/1 is read leniently, as the most
// forgiving server would (whitespace around names, NUL/DEL in names, bare LF, folds), so that a
// `trellis-client-id` any app might believe is recorded; and strictly, by the RFC grammar
// (h1-grammar.ts), so that a head no proxy should forward is recorded too. Every request is
// answered 200 with `id=<the identities it carried>`, and its Upgrade offer is recorded; one with
// an `x-fuzz-switch` line (gen-upgrade.ts) may be answered 101 instead, as the most obliging app
// would: to h2c whether offered or not, or to the first protocol offered. A connection switched to
// h2c is then served by node:http2, and what reaches the app there is recorded as after an
// upgrade; one switched to anything else is read and forgotten (a tunnel's bytes are not HTTP).
import http2 from 'node:http2';
import net from 'node:net';
import { detectProtocol } from '../src/proxy/detect/detect.ts';
import { isClientIdField } from '../src/proxy/policy/client-id-field.ts';
import { ID_HEADER } from './forge.ts';
import { SWITCH_HEADER } from './gen-upgrade.ts';
import { H1_LIMITS, checkChunkLine, checkFieldLine, readRequestHead } from './h1-grammar.ts';

export interface Seen {
  readonly via: 'http1' | 'h2';
  readonly method: string;
  readonly path: string;
  /** The x-fuzz header: which batch, plan and input sent it (when it survived mutation). */
  readonly tag: string | null;
  /** Values of every field a lenient reader takes as trellis-client-id. */
  readonly ids: readonly string[];
  readonly trailerIds: readonly string[];
  /** The first grammar rule or limit the forwarded request breaks, or null. */
  readonly violation: string | null;
  /** The character that breaks it, when one does. */
  readonly offending: string | null;
  /** The head as received (latin1, at most 4 KiB). */
  readonly sample: string;
  /** Every Upgrade field of the request, joined with ", " (null: none). */
  readonly upgrade: string | null;
  /** HTTP/2 on a connection that a 101 switched from HTTP/1 (h2c smuggled past the proxy). */
  readonly afterUpgrade: boolean;
}

export interface OracleApp {
  readonly port: number;
  /** Connections accepted so far. */
  connections(): number;
  /** Called for every request that reaches the app. */
  onSeen: (seen: Seen) => void;
  close(): Promise<void>;
}

const SAMPLE_BYTES = 4096;
const MAX_BUFFERED = 2 * 1024 * 1024;
const IDLE_MS = 30_000;

/** A lenient reading of one field line: [lower-case name, value], or null. */
function lenientField(line: string): [string, string] | null {
  const colon = line.indexOf(':');
  if (colon <= 0) return null;
  // NUL and DEL dropped: a C server may stop reading a name at NUL, or skip DEL.
  const name = line.slice(0, colon).split('\0').join('').split('\x7f').join('').trim().toLowerCase();
  return [name, line.slice(colon + 1).trim()];
}

/** Lenient field lines: CRLF or bare LF, a line starting with whitespace continues the previous. */
function lenientFields(text: string): [string, string][] {
  const out: [string, string][] = [];
  for (const line of text.split(/\r?\n/)) {
    if (line === '') continue;
    const last = out[out.length - 1];
    if ((line.startsWith(' ') || line.startsWith('\t')) && last !== undefined) {
      last[1] = `${last[1]} ${line.trim()}`.trim();
      continue;
    }
    const f = lenientField(line);
    if (f !== null) out.push(f);
  }
  return out;
}

const idsOf = (fields: readonly (readonly [string, string])[]) =>
  fields.filter(([n]) => isClientIdField(n, ID_HEADER)).map(([, v]) => v);

/** The end of a head (after its empty line), CRLF CRLF or LF LF, from `from`; -1 when not yet. */
function headEnd(buf: Buffer, from: number): number {
  const crlf = buf.indexOf('\r\n\r\n', from, 'latin1');
  const lf = buf.indexOf('\n\n', from, 'latin1');
  if (crlf === -1) return lf === -1 ? -1 : lf + 2;
  return lf === -1 || crlf + 2 < lf ? crlf + 4 : lf + 2;
}

type Body = { kind: 'none' } | { kind: 'length'; left: number } | { kind: 'chunked' };

/** A chunked body from `start`: where it ends, trailer identities and a violation; null if incomplete. */
function readChunked(
  buf: Buffer,
  start: number,
): { end: number; ids: string[]; violation: string | null } | null {
  let pos = start;
  let violation: string | null = null;
  for (;;) {
    const lf = buf.indexOf(0x0a, pos);
    if (lf === -1) return null;
    const line = buf.latin1Slice(pos, buf[lf - 1] === 0x0d ? lf - 1 : lf);
    if (buf[lf - 1] !== 0x0d) violation ??= 'bare LF in chunked body';
    violation ??= checkChunkLine(line);
    const size = parseInt(line, 16);
    if (!Number.isFinite(size) || size < 0)
      return { end: buf.length, ids: [], violation: violation ?? 'bad chunk size' };
    pos = lf + 1;
    if (size === 0) break;
    if (buf.length < pos + size + 2) return null;
    if (buf[pos + size] !== 0x0d || buf[pos + size + 1] !== 0x0a)
      violation ??= 'chunk data not followed by CRLF';
    pos += size + 2;
  }
  const ids: string[] = [];
  for (;;) {
    const lf = buf.indexOf(0x0a, pos);
    if (lf === -1) return null;
    const line = buf.latin1Slice(pos, buf[lf - 1] === 0x0d ? lf - 1 : lf);
    pos = lf + 1;
    if (line === '') return { end: pos, ids, violation };
    violation ??= checkFieldLine(line);
    const f = lenientField(line);
    if (f !== null && isClientIdField(f[0], ID_HEADER)) ids.push(f[1]);
  }
}

/** The protocol names of an Upgrade list as written (versions dropped, empty elements skipped). */
function upgradeNames(value: string): string[] {
  return value
    .split(',')
    .map((p) => p.trim().split('/')[0]!)
    .filter((p) => p !== '');
}

/** The protocol an `x-fuzz-switch` line asks the app to switch to, or null (no 101). */
function switchTo(mode: string | undefined, upgrade: string | null): string | null {
  if (mode === 'h2c') return 'h2c';
  if (mode === 'offered' && upgrade !== null) return upgradeNames(upgrade)[0] ?? null;
  return null;
}

class Http1Conn {
  private buf: Buffer = Buffer.alloc(0);
  private readonly socket: net.Socket;
  private readonly onSeen: (seen: Seen) => void;
  private readonly onData = (chunk: Buffer): void => this.feed(chunk);
  /** After a 101: where the connection goes (its bytes after the request head included). */
  private readonly onSwitch: (socket: net.Socket, protocol: string, rest: Buffer) => void;
  private switched = false;

  constructor(
    socket: net.Socket,
    first: Buffer,
    onSeen: (seen: Seen) => void,
    onSwitch: (socket: net.Socket, protocol: string, rest: Buffer) => void,
  ) {
    this.socket = socket;
    this.onSeen = onSeen;
    this.onSwitch = onSwitch;
    socket.on('data', this.onData);
    this.feed(first);
  }

  private feed(chunk: Buffer): void {
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
    while (this.buf.length > 0 && !this.socket.destroyed && !this.switched) {
      const used = this.one();
      if (used === 0) break;
      this.buf = this.buf.subarray(used);
    }
    if (!this.switched && this.buf.length > MAX_BUFFERED) this.socket.destroy();
  }

  /** Handles one whole request at the start of the buffer; returns the bytes it took (0: wait). */
  private one(): number {
    const buf = this.buf;
    let start = 0;
    while (start < buf.length && (buf[start] === 0x0d || buf[start] === 0x0a)) start++;
    const end = headEnd(buf, start);
    if (end === -1) return 0;
    const headText = buf.latin1Slice(start, end);
    const strict = readRequestHead(headText);
    const firstLine = headText.split(/\r?\n/, 1)[0]!;
    const [method = '', path = ''] = firstLine.split(' ');
    const fields = lenientFields(headText.slice(firstLine.length));
    const get = (name: string) => fields.find(([n]) => n === name)?.[1];
    const te = get('transfer-encoding');
    const cl = get('content-length');
    let body: Body = { kind: 'none' };
    if (te !== undefined && te.toLowerCase().includes('chunked')) body = { kind: 'chunked' };
    else if (cl !== undefined && /^\d+$/.test(cl)) body = { kind: 'length', left: Number(cl) };
    let used = end;
    let trailerIds: string[] = [];
    let violation = strict.violation;
    if (start > 0) violation ??= 'empty lines before the request-line';
    if (body.kind === 'length') {
      if (buf.length < end + body.left) return 0;
      used = end + body.left;
    } else if (body.kind === 'chunked') {
      const c = readChunked(buf, end);
      if (c === null) return 0;
      used = c.end;
      trailerIds = c.ids;
      violation ??= c.violation;
    }
    const upgrades = fields.filter(([n]) => n === 'upgrade').map(([, v]) => v);
    const upgrade = upgrades.length === 0 ? null : upgrades.join(', ');
    this.onSeen({
      via: 'http1',
      method,
      path,
      tag: get('x-fuzz') ?? null,
      ids: idsOf(fields),
      trailerIds,
      violation,
      offending: violation === strict.violation ? strict.offending : null,
      sample: headText.slice(0, SAMPLE_BYTES),
      upgrade,
      afterUpgrade: false,
    });
    const protocol = switchTo(get(SWITCH_HEADER), upgrade);
    if (protocol !== null && method !== 'CONNECT') {
      this.socket.write(
        `HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: ${protocol}\r\n\r\n`,
      );
      this.switched = true;
      this.socket.off('data', this.onData); // the switched protocol reads the rest
      this.onSwitch(this.socket, protocol, Buffer.from(buf.subarray(used)));
      return used;
    }
    const reply = `id=${idsOf(fields).join(',')}`;
    const close = /close/i.test(get('connection') ?? '') || method === 'CONNECT';
    const status = method === 'CONNECT' ? '405 Method Not Allowed' : '200 OK';
    this.socket.write(
      `HTTP/1.1 ${status}\r\ncontent-length: ${reply.length}\r\n${close ? 'connection: close\r\n' : ''}\r\n` +
        (method === 'HEAD' ? '' : reply),
    );
    if (close) this.socket.end();
    return used;
  }
}

/** Seen of an HTTP/2 request from node:http2's raw field list. */
function h2Seen(raw: readonly string[], trailers: readonly string[], afterUpgrade: boolean): Seen {
  const fields: [string, string][] = [];
  let bytes = 0;
  for (let i = 0; i + 1 < raw.length; i += 2) {
    fields.push([raw[i]!.toLowerCase(), raw[i + 1]!]);
    bytes += raw[i]!.length + raw[i + 1]!.length + 4;
  }
  const trailerFields: [string, string][] = [];
  for (let i = 0; i + 1 < trailers.length; i += 2)
    trailerFields.push([trailers[i]!.toLowerCase(), trailers[i + 1]!]);
  const regular = fields.filter(([n]) => !n.startsWith(':')).length;
  const get = (name: string) => fields.find(([n]) => n === name)?.[1];
  const upgrades = fields.filter(([n]) => n === 'upgrade').map(([, v]) => v);
  return {
    via: 'h2',
    method: get(':method') ?? '',
    path: get(':path') ?? '',
    tag: get('x-fuzz') ?? null,
    ids: idsOf(fields),
    trailerIds: idsOf(trailerFields),
    violation:
      regular > H1_LIMITS.maxHeaders + 8
        ? 'more fields than the limit'
        : bytes > H1_LIMITS.maxHeaderBytes + 1024
          ? 'header section over the size limit'
          : null,
    offending: null,
    sample: fields
      .map(([n, v]) => `${n}: ${v}`)
      .join('\n')
      .slice(0, SAMPLE_BYTES),
    upgrade: upgrades.length === 0 ? null : upgrades.join(', '),
    afterUpgrade,
  };
}

/** An HTTP/2 server that records every request it gets (`afterUpgrade`: on switched connections). */
function recordingH2Server(app: OracleApp, afterUpgrade: boolean): http2.Http2Server {
  const h2 = http2.createServer({
    maxHeaderListPairs: 4096,
    maxSessionMemory: 64,
    settings: { maxHeaderListSize: 1 << 20 },
  });
  h2.on('sessionError', () => {});
  h2.on('stream', (stream, _headers, _flags, rawHeaders: string[]) => {
    stream.on('error', () => {});
    let trailers: string[] = [];
    stream.on('trailers', (t: http2.IncomingHttpHeaders) => {
      trailers = Object.entries(t).flatMap(([n, v]) =>
        (Array.isArray(v) ? v : [v ?? '']).flatMap((x) => [n, x]),
      );
    });
    stream.resume();
    stream.once('end', () => {
      const s = h2Seen(rawHeaders, trailers, afterUpgrade);
      app.onSeen(s);
      if (stream.destroyed || stream.closed) return;
      try {
        stream.respond({ ':status': 200 });
        stream.end(`id=${s.ids.join(',')}`);
      } catch {
        // the stream went away meanwhile
      }
    });
  });
  return h2;
}

/** Starts the app on 127.0.0.1:`port` (0: any free port). */
export async function startOracleApp(port = 0): Promise<OracleApp> {
  let accepted = 0;
  const app: OracleApp = {
    port: 0,
    connections: () => accepted,
    onSeen: () => {},
    close: async () => {},
  };
  const h2 = recordingH2Server(app, false);
  const switchedH2 = recordingH2Server(app, true);
  const onSwitch = (socket: net.Socket, protocol: string, rest: Buffer): void => {
    if (protocol.toLowerCase() !== 'h2c') {
      socket.resume(); // a tunnel's bytes: read and forget
      return;
    }
    socket.pause();
    if (rest.length > 0) socket.unshift(rest);
    switchedH2.emit('connection', socket);
  };
  const server = net.createServer((socket) => {
    accepted++;
    socket.on('error', () => {});
    socket.setTimeout(IDLE_MS, () => socket.destroy());
    let first = Buffer.alloc(0);
    const classify = (chunk: Buffer) => {
      first = Buffer.concat([first, chunk]);
      let skip = 0;
      while (skip < first.length && (first[skip] === 0x0d || first[skip] === 0x0a)) skip++;
      const kind = skip === first.length ? 'need-more' : detectProtocol(first.subarray(skip), 64 * 1024).kind;
      if (kind === 'need-more' && first.length < MAX_BUFFERED) return;
      socket.removeListener('data', classify);
      if (kind === 'h2') {
        socket.pause();
        socket.unshift(first);
        h2.emit('connection', socket);
      } else if (kind === 'http1') new Http1Conn(socket, first, (s) => app.onSeen(s), onSwitch);
      else socket.resume(); // opaque: read and forget
    };
    socket.on('data', classify);
  });
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  return Object.assign(app, {
    port: (server.address() as net.AddressInfo).port,
    close: () =>
      new Promise<void>((resolve) => {
        h2.close();
        switchedH2.close();
        server.close(() => resolve());
        setTimeout(resolve, 1000).unref();
      }),
  });
}
