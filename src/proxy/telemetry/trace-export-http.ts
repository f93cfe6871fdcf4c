// OTLP/HTTP span transport: `POST {collector}/v1/traces` with the protobuf body
// (application/x-protobuf), over http:// or https:// (system CAs), one keep-alive connection.
// Accepted: any 2xx. The batching, bounds and backoff around it are trace-export.ts's.
//
// node:http (and node:https) are loaded on the first export, not with the proxy: a proxy that does
// not trace (or has not finished a traced request yet) does not pay their memory.
import type http from 'node:http';
import type { SpanTransport } from './trace-export.ts';

/** The URL spans are POSTed to: the base URL with /v1/traces appended (kept when already there). */
export function tracesUrl(collector: string | URL): URL {
  const url = new URL(collector);
  if (!url.pathname.endsWith('/v1/traces')) url.pathname = url.pathname.replace(/\/+$/, '') + '/v1/traces';
  return url;
}

export class OtlpHttpTransport implements SpanTransport {
  private readonly url: URL;
  private readonly headers: Readonly<Record<string, string>>;
  private client: { request: typeof http.request; agent: http.Agent } | null = null;

  /** `headers`: sent with every export (the collector's bearer token). */
  constructor(collector: string | URL, headers: Readonly<Record<string, string>> = {}) {
    this.url = tracesUrl(collector);
    this.headers = headers;
  }

  private async httpClient(): Promise<{ request: typeof http.request; agent: http.Agent }> {
    if (this.client !== null) return this.client;
    const mod = this.url.protocol === 'https:' ? await import('node:https') : await import('node:http');
    this.client = { request: mod.request, agent: new mod.Agent({ keepAlive: true, maxSockets: 1 }) };
    return this.client;
  }

  async send(body: Buffer, timeoutMs: number): Promise<string | Error | null> {
    let client: { request: typeof http.request; agent: http.Agent };
    try {
      client = await this.httpClient();
    } catch (err) {
      return err as Error;
    }
    const status = await this.post(client, body, timeoutMs);
    if (typeof status !== 'number') return status;
    return status >= 200 && status < 300 ? null : `HTTP ${status}`;
  }

  /** The response status, or the error that stopped the request (never rejects). */
  private post(
    { request, agent }: { request: typeof http.request; agent: http.Agent },
    body: Buffer,
    timeoutMs: number,
  ): Promise<number | Error> {
    return new Promise((resolve) => {
      let done = false;
      const finish = (v: number | Error): void => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        resolve(v);
      };
      const req = request(this.url, {
        method: 'POST',
        agent,
        headers: {
          ...this.headers,
          'content-type': 'application/x-protobuf',
          'content-length': body.length,
        },
      });
      const timer = setTimeout(() => {
        req.destroy(new Error(`no answer within ${timeoutMs} ms`));
      }, timeoutMs);
      timer.unref();
      req.on('error', (err) => finish(err));
      req.on('response', (res) => {
        res.resume(); // the ExportTraceServiceResponse is not needed
        res.on('error', (err) => finish(err));
        res.on('end', () => finish(res.statusCode ?? 0));
        res.on('close', () => finish(res.statusCode ?? 0));
      });
      req.end(body);
    });
  }

  close(): void {
    this.client?.agent.destroy();
  }
}
