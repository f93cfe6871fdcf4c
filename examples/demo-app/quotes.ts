// The demo's "quotes" service: answers JSON quotes. GET /quote/random takes a few to a few dozen
// milliseconds and fails on purpose (500) for a share of requests (--failure-rate, default 0.1),
// so the demo's success rates and latency percentiles have something to show; GET /quote/today
// is fast and always succeeds. Usage: node examples/demo-app/quotes.ts [--listen HOST:PORT]
import { parseServiceFlags, sendJson, serve, sleep } from './common.ts';

const QUOTES = [
  'Simple things should be simple, complex things should be possible.',
  'Make it work, make it right, make it fast.',
  'The network is reliable. (It is not.)',
  'Measure twice, cut once.',
  'Everything fails, all the time.',
  'Premature optimization is the root of all evil.',
];

const flags = parseServiceFlags(process.argv.slice(2));
const failureRate = Number(flags.extra.get('failure-rate') ?? '0.1');

/** A latency with a long tail: mostly 2-15 ms, now and then up to ~100 ms. */
function randomLatencyMs(): number {
  const base = 2 + Math.random() * 13;
  return Math.random() < 0.05 ? base + Math.random() * 85 : base;
}

await serve('quotes', flags, (req, res) => {
  const url = new URL(req.url ?? '/', 'http://quotes');
  req.resume();
  if (req.method !== 'GET') return sendJson(res, 405, { error: 'only GET' });
  if (url.pathname === '/quote/today') {
    const day = Math.floor(Date.now() / 86_400_000);
    return sendJson(res, 200, { quote: QUOTES[day % QUOTES.length] });
  }
  if (url.pathname === '/quote/random') {
    void sleep(randomLatencyMs()).then(() => {
      if (Math.random() < failureRate) sendJson(res, 500, { error: 'the quote machine jammed' });
      else sendJson(res, 200, { quote: QUOTES[Math.floor(Math.random() * QUOTES.length)] });
    });
    return;
  }
  sendJson(res, 404, { error: `no route for ${url.pathname}` });
});
