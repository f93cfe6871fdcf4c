// The emojivoto "vote-bot": traffic for the demo. It calls web at a modest, bounded rate
// (--rate per second, default 10; at most 16 requests in flight, ticks skip rather than queue):
// 7 in 10 are votes for a random emoji (:doughnut: more often than the rest, so the failing
// votes show), the rest list the emoji, ask for the leaderboard or load the page. It also
// answers GET /stats (its own counts, JSON) on its listen address, so it can be meshed like the
// other services.
// Reaching web: WEB_ADDR (HOST:PORT) directly, else http://web.emojivoto:8080 through HTTP_PROXY.
// Usage: node examples/emojivoto/vote-bot.ts [--listen HOST:PORT | --port N] [--rate N]
//        [--exit-on-stdin-close]
import http from 'node:http';
import { httpProxyAddress, MESH_NAMES, parseServiceFlags, peer, serveHttp, type Emoji } from './common.ts';

const flags = parseServiceFlags(process.argv.slice(2));
const rate = Number(flags.extra.get('rate') ?? process.env.VOTE_RATE ?? '10');
if (!(rate > 0 && rate <= 200)) throw new Error(`--rate must be in (0, 200], got ${rate}`);
const MAX_IN_FLIGHT = 16;

const web = peer('web', 'WEB_ADDR');
const proxy = web.direct ? null : httpProxyAddress();
if (!web.direct && proxy === null) {
  throw new Error(`set WEB_ADDR (HOST:PORT) or HTTP_PROXY (to reach ${MESH_NAMES.web} through the mesh)`);
}
const agent = new http.Agent({ keepAlive: true, maxSockets: MAX_IN_FLIGHT });
const counts = { sent: 0, ok: 0, failed: 0, errors: 0 };

/** GET path on web; the status and body, or null when the request itself failed. */
function get(path: string): Promise<{ status: number; body: string } | null> {
  const via = proxy ?? web.target;
  const colon = via.lastIndexOf(':');
  return new Promise((resolve) => {
    const req = http.get(
      {
        agent,
        host: via.slice(0, colon).replace(/^\[|\]$/g, ''),
        port: Number(via.slice(colon + 1)),
        // absolute-form through the proxy, as an HTTP_PROXY-aware client sends it
        path: proxy === null ? path : `http://${web.target}${path}`,
        headers: { host: web.target },
        timeout: 5000,
      },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => (body += d));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
        res.on('error', () => resolve(null));
      },
    );
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(null));
  });
}

let shortcodes: string[] = [];

/** Keeps the shortcodes of a /api/list answer, for the votes to pick from. */
function learnShortcodes(res: { status: number; body: string } | null): void {
  if (res?.status !== 200) return;
  try {
    shortcodes = (JSON.parse(res.body) as Emoji[]).map((e) => e.shortcode);
  } catch {
    // keep the list we had
  }
}

function pickPath(): string {
  const r = Math.random();
  if (r < 0.7 || shortcodes.length === 0) {
    if (shortcodes.length === 0) return '/api/list';
    const choice =
      Math.random() < 0.1 ? ':doughnut:' : shortcodes[Math.floor(Math.random() * shortcodes.length)]!;
    return `/api/vote?choice=${encodeURIComponent(choice)}`;
  }
  if (r < 0.82) return '/api/list';
  if (r < 0.94) return '/api/leaderboard';
  return '/';
}

let inFlight = 0;
let budget = 0;

function tick(): void {
  budget = Math.min(budget + rate / 10, Math.max(rate, 1));
  while (budget >= 1 && inFlight < MAX_IN_FLIGHT) {
    budget -= 1;
    inFlight++;
    counts.sent++;
    const path = pickPath();
    void get(path).then((res) => {
      inFlight--;
      if (res === null) counts.errors++;
      else if (res.status >= 200 && res.status < 300) counts.ok++;
      else counts.failed++;
      if (path === '/api/list') learnShortcodes(res);
    });
  }
}

await serveHttp('vote-bot', flags, (req, res) => {
  req.resume();
  const body = JSON.stringify({ rate, web: web.target, viaProxy: proxy, ...counts });
  res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
  res.end(body);
});
void get('/api/list').then(learnShortcodes);
setInterval(tick, 100);
