// Raw HTTP/2 peers for attack tests: frames written byte for byte with the project's own
// FrameWriter and HPACK encoder (so a test can send what no well-behaved client would), and a
// reader that collects what the other side answers.
import net from 'node:net';
import { once } from 'node:events';
import { CLIENT_PREFACE, FrameReader, FrameWriter } from '../../src/proxy/h2/frames.ts';
import { HpackEncoder } from '../../src/proxy/h2/hpack.ts';

export interface RawFrame {
  type: number;
  flags: number;
  id: number;
  payload: Buffer;
}

/** The fields of a GET request for `path`. */
export const GET = (path: string, authority = 'x'): string[] => [
  ':method',
  'GET',
  ':scheme',
  'http',
  ':authority',
  authority,
  ':path',
  path,
];

/** A client's first bytes (preface, SETTINGS with `settings`), then whatever `build` writes. */
export function rawClient(
  build: (w: FrameWriter, enc: HpackEncoder) => void,
  settings: ReadonlyArray<readonly [number, number]> = [],
): Buffer {
  const w = new FrameWriter();
  w.bytes(CLIENT_PREFACE);
  w.settings(settings);
  build(w, new HpackEncoder());
  return w.take()!;
}

/** Frames written by `build` alone (no preface). */
export function rawFrames(build: (w: FrameWriter) => void): Buffer {
  const w = new FrameWriter();
  build(w);
  return w.take() ?? Buffer.alloc(0);
}

/** A raw connection that collects every frame the other side sends. */
export class RawPeer {
  readonly socket: net.Socket;
  readonly frames: RawFrame[] = [];
  closed = false;
  private readonly reader = new FrameReader();

  private constructor(socket: net.Socket) {
    this.socket = socket;
    this.reader.maxFrameSize = 1 << 24;
    socket.on('data', (d: Buffer) =>
      this.reader.push(d, (type, flags, id, payload) =>
        this.frames.push({ type, flags, id, payload: Buffer.from(payload) }),
      ),
    );
    socket.on('error', () => {});
    socket.once('close', () => (this.closed = true));
  }

  static async connect(port: number): Promise<RawPeer> {
    const socket = net.connect(port, '127.0.0.1');
    await once(socket, 'connect');
    return new RawPeer(socket);
  }

  /** Writes `bytes`, waiting for the socket to drain (at most `ms`) when it is full. */
  async write(bytes: Buffer, ms = 1000): Promise<void> {
    if (this.closed) return;
    if (!this.socket.write(bytes))
      await Promise.race([
        once(this.socket, 'drain').catch(() => {}), // (an 'error': the other side cut us off)
        new Promise((r) => setTimeout(r, ms)),
      ]);
  }

  /** The first frame of `type`, waiting up to `ms` for it (undefined when none came). */
  async frame(type: number, ms = 2000): Promise<RawFrame | undefined> {
    const deadline = Date.now() + ms;
    for (;;) {
      const f = this.frames.find((x) => x.type === type);
      if (f !== undefined || this.closed || Date.now() > deadline) return f;
      await new Promise((r) => setTimeout(r, 5));
    }
  }

  close(): void {
    this.socket.destroy();
  }
}
