// Idle tracking for HTTP/2 sessions, downstream and upstream alike: a session is idle when it has
// carried no stream for `idleMs`; it is then closed gracefully (GOAWAY, nothing in flight to lose).
// A long-lived stream (a gRPC watch) keeps its session open however quiet it is, which is why this
// counts streams instead of using Http2Session.setTimeout (that measures frame inactivity).
import type { Http2Session } from 'node:http2';

export class SessionIdleTimer {
  private readonly session: Http2Session;
  private readonly idleMs: number;
  private readonly onIdle: () => void;
  private timer: NodeJS.Timeout | undefined;
  private started = false;
  /** Streams currently open on the session (as counted by streamOpened/streamClosed). */
  active = 0;

  constructor(session: Http2Session, idleMs: number, onIdle: () => void) {
    this.session = session;
    this.idleMs = idleMs;
    this.onIdle = onIdle;
  }

  /** Starts counting idle time (call once the session is established). */
  start(): void {
    this.started = true;
    if (this.active === 0) this.arm();
  }

  streamOpened(): void {
    this.active++;
    this.disarm();
  }

  streamClosed(): void {
    if (this.active > 0) this.active--;
    if (this.active === 0) this.arm();
  }

  /** Stops the timer for good (the session closed). */
  stop(): void {
    this.disarm();
  }

  private arm(): void {
    if (
      !this.started ||
      this.idleMs <= 0 ||
      this.timer !== undefined ||
      this.session.closed ||
      this.session.destroyed
    )
      return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      if (this.active === 0) this.onIdle();
    }, this.idleMs);
    this.timer.unref();
  }

  private disarm(): void {
    if (this.timer === undefined) return;
    clearTimeout(this.timer);
    this.timer = undefined;
  }
}
