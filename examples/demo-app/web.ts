// The demo's "web" service: for each request it asks the "quotes" service for a quote and returns
// it, so every request crosses the mesh twice (web's outbound proxy, then quotes' inbound proxy).
// It reaches quotes the way an app that honours HTTP_PROXY does: an absolute-form request
// (GET http://QUOTES/quote/random) sent to its proxy. GET / asks for a random quote (which fails
// now and then: web answers 502 then), GET /today for the quote of the day.
//
// Where quotes and the proxy are: HTTP_PROXY and QUOTES_ADDR (HOST:PORT) in the environment, or
// JSON lines on stdin, {"httpProxy":"127.0.0.1:M","quotes":"127.0.0.1:Q"}: `trellis demo` starts
// web before its proxy (the proxy needs web's port), and tells it afterwards. Until it knows both
// it answers 503. Usage: node examples/demo-app/web.ts [--listen HOST:PORT] [--exit-on-stdin-close]
import http from 'node:http';
import { parseServiceFlags, sendJson, serve } from './common.ts';

interface Settings {
  httpProxy?: string;
  quotes?: string;
}

const settings: Settings = {
  httpProxy: process.env.HTTP_PROXY?.replace(/^http:\/\//, '').replace(/\/$/, ''),
  quotes: process.env.QUOTES_ADDR,
};
let pending = '';
process.stdin.setEncoding('utf8');
process.stdin.on('data', (chunk: string) => {
  pending += chunk;
  let nl: number;
  while ((nl = pending.indexOf('\n')) !== -1) {
    const line = pending.slice(0, nl).trim();
    pending = pending.slice(nl + 1);
    if (line === '') continue;
    try {
      Object.assign(settings, JSON.parse(line) as Settings);
    } catch {
      process.stderr.write(`web: ignoring a settings line that is not JSON: ${line}\n`);
    }
  }
});

const agent = new http.Agent({ keepAlive: true, maxSockets: 32 });

/** GET http://QUOTES/path through the proxy; resolves with the status and the parsed body. */
function askQuotes(path: string, proxy: string, quotes: string): Promise<{ status: number; body: unknown }> {
  const colon = proxy.lastIndexOf(':');
  return new Promise((resolve, reject) => {
    const req = http.get(
      {
        agent,
        host: proxy.slice(0, colon),
        port: Number(proxy.slice(colon + 1)),
        path: `http://${quotes}${path}`,
        headers: { host: quotes },
        timeout: 5000,
      },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => (text += d));
        res.on('end', () => {
          let body: unknown = text;
          try {
            body = JSON.parse(text);
          } catch {
            // not JSON (an error made up by a proxy, say): keep the text
          }
          resolve({ status: res.statusCode ?? 0, body });
        });
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error('quotes did not answer in 5 s')));
    req.on('error', reject);
  });
}

const ROUTES: Record<string, string> = { '/': '/quote/random', '/today': '/quote/today' };

await serve('web', parseServiceFlags(process.argv.slice(2)), (req, res) => {
  req.resume();
  const path = new URL(req.url ?? '/', 'http://web').pathname;
  const upstreamPath = ROUTES[path];
  if (upstreamPath === undefined) return sendJson(res, 404, { error: `no route for ${path}` });
  const { httpProxy, quotes } = settings;
  if (httpProxy === undefined || quotes === undefined) {
    return sendJson(res, 503, { error: 'web does not know where quotes is yet' });
  }
  askQuotes(upstreamPath, httpProxy, quotes).then(
    ({ status, body }) => {
      if (status === 200) sendJson(res, 200, { servedBy: 'web', ...(body as object) });
      else sendJson(res, 502, { error: 'quotes failed', status, body });
    },
    (err: Error) => sendJson(res, 502, { error: `quotes unreachable: ${err.message}` }),
  );
});
