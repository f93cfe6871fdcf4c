// The emojivoto "web" service (HTTP): the page people vote on, and its JSON API, built on the
// two gRPC services. GET / is a small HTML page; GET /api/list lists the emoji (emoji.ListAll);
// GET /api/vote?choice=:joy: looks the emoji up (emoji.FindByShortcode: 404 when unknown) then
// votes for it (voting.Vote: 500 when the vote fails, as it does for :doughnut:); GET
// /api/leaderboard lists the votes with their emoji, most first (voting.Results).
// Usage: node examples/emojivoto/web.ts [--listen HOST:PORT | --port N] [--exit-on-stdin-close]
// with EMOJI_ADDR / VOTING_ADDR (HOST:PORT) to reach them directly, else by name through grpc_proxy.
// Each call carries the trace context of the request it serves (traceMetadata), so a trace goes on
// from web to emoji and voting.
import type http from 'node:http';
import type * as grpc from '@grpc/grpc-js';
import {
  EmojiService,
  grpcClient,
  parseServiceFlags,
  peer,
  serveHttp,
  traceMetadata,
  unary,
  VotingService,
  type Emoji,
} from './common.ts';

const emojiClient = grpcClient(EmojiService, peer('emoji', 'EMOJI_ADDR'));
const votingClient = grpcClient(VotingService, peer('voting', 'VOTING_ADDR'));

const PAGE = `<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>Emoji Vote</title>
<style>body{font-family:sans-serif;max-width:40em;margin:2em auto}button{font-size:2em;margin:.1em;border:none;background:none;cursor:pointer}</style>
</head>
<body>
<h1>🗳 Emoji Vote</h1>
<p>Pick your favourite emoji. See the <a href="/api/leaderboard">leaderboard</a>.</p>
<div id="emoji">loading…</div>
<p id="result"></p>
<script>
fetch('/api/list').then((r) => r.json()).then((list) => {
  const box = document.getElementById('emoji');
  box.textContent = '';
  for (const e of list) {
    const b = document.createElement('button');
    b.title = e.shortcode;
    b.textContent = e.unicode;
    b.onclick = () => fetch('/api/vote?choice=' + encodeURIComponent(e.shortcode)).then(async (r) => {
      document.getElementById('result').textContent = r.ok ? 'You voted for ' + e.unicode : 'Vote failed: ' + (await r.text());
    });
    box.appendChild(b);
  }
});
</script>
</body>
</html>
`;

function send(res: http.ServerResponse, status: number, type: string, body: string): void {
  res.writeHead(status, { 'content-type': type, 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

function sendJson(res: http.ServerResponse, status: number, body: unknown): void {
  send(res, status, 'application/json', JSON.stringify(body));
}

/** A failed gRPC call as an HTTP answer: 503 when the service cannot be reached, else 500. */
function sendGrpcError(res: http.ServerResponse, what: string, err: unknown): void {
  const e = err as Partial<grpc.ServiceError>;
  const unreachable = e.code === 14 /* UNAVAILABLE */ || e.code === 4; /* DEADLINE_EXCEEDED */
  sendJson(res, unreachable ? 503 : 500, { error: `${what}: ${e.details ?? e.message ?? String(err)}` });
}

async function listAll(trace: grpc.Metadata): Promise<readonly Emoji[]> {
  return (await unary<{ list: Emoji[] }>(emojiClient, 'listAll', {}, trace)).list;
}

async function vote(res: http.ServerResponse, choice: string, trace: grpc.Metadata): Promise<void> {
  let found: Emoji | undefined;
  try {
    found =
      (await unary<{ emoji?: Emoji | null }>(emojiClient, 'findByShortcode', { shortcode: choice }, trace))
        .emoji ?? undefined;
  } catch (err) {
    return sendGrpcError(res, 'emoji.FindByShortcode', err);
  }
  if (found === undefined || found.shortcode === '')
    return sendJson(res, 404, { error: `no emoji ${choice}` });
  try {
    await unary(votingClient, 'vote', { shortcode: found.shortcode }, trace);
  } catch (err) {
    return sendGrpcError(res, 'voting.Vote', err);
  }
  sendJson(res, 200, { voted: found });
}

async function leaderboard(res: http.ServerResponse, trace: grpc.Metadata): Promise<void> {
  try {
    const [results, list] = await Promise.all([
      unary<{ results: { shortcode: string; votes: number }[] }>(votingClient, 'results', {}, trace),
      listAll(trace),
    ]);
    const unicode = new Map(list.map((e) => [e.shortcode, e.unicode]));
    sendJson(
      res,
      200,
      results.results.map((r) => ({
        shortcode: r.shortcode,
        unicode: unicode.get(r.shortcode) ?? '?',
        votes: r.votes,
      })),
    );
  } catch (err) {
    sendGrpcError(res, 'leaderboard', err);
  }
}

await serveHttp('web', parseServiceFlags(process.argv.slice(2)), (req, res) => {
  req.resume();
  const url = new URL(req.url ?? '/', 'http://web');
  if (req.method !== 'GET') return sendJson(res, 405, { error: 'only GET' });
  switch (url.pathname) {
    case '/':
      return send(res, 200, 'text/html; charset=utf-8', PAGE);
    case '/api/list':
      return void listAll(traceMetadata(req.headers)).then(
        (list) => sendJson(res, 200, list),
        (err: unknown) => sendGrpcError(res, 'emoji.ListAll', err),
      );
    case '/api/vote': {
      const choice = url.searchParams.get('choice');
      if (choice === null || choice === '') return sendJson(res, 400, { error: 'choice is required' });
      return void vote(res, choice, traceMetadata(req.headers));
    }
    case '/api/leaderboard':
      return void leaderboard(res, traceMetadata(req.headers));
    default:
      return sendJson(res, 404, { error: `no route for ${url.pathname}` });
  }
});
