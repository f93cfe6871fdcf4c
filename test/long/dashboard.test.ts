// The web dashboard in headless Chromium (Debian's /usr/bin/chromium driven by puppeteer-core),
// against a real mesh: `trellis demo` (emojivoto on the mesh, with its vote-bot's traffic) in a
// fresh folder, `trellis dashboard --state` printing the page's URL. The page must render every
// workload, update live (web's request counter grows while vote-bot sends), draw the edges that
// `trellis edges -o json` reports, show a workload page with callers and callees, the route the
// test applies to web (its status, backend and live numbers), the routes of its calls (the Services
// of emoji and voting; on vote-bot's page, web's route), a live tap, and recent traces of the
// demo's traffic (the demo traces every request) of which one opens with its spans, show the CLI
// command of each view, and load nothing from anywhere but the control plane. The screenshots of
// the namespace view and of web's workload page go to a temporary folder, or to docs/dashboard.png
// and docs/dashboard-workload.png (README shows them) when TRELLIS_UPDATE_SCREENSHOT=1, so that a
// test run leaves the checkout as it was. A second test feeds the page names that are markup
// (through request interception) and checks they stay text.
// Skipped, saying so, when chromium is not installed.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import puppeteer, { type Browser, type Page } from 'puppeteer-core';
import { runCli, startCli, waitFor } from '../helpers/cli.ts';
import { startDemo, stateFolder, until } from '../helpers/demo-run.ts';
import { REPO } from '../helpers/proxy-process.ts';
import { DASHBOARD_SCRIPT } from '../../src/control/dashboard/app-script.ts';
import { DASHBOARD_CSS, DASHBOARD_HTML } from '../../src/control/dashboard/page.ts';

const CHROMIUM = '/usr/bin/chromium';
const SKIP = existsSync(CHROMIUM) ? false : `${CHROMIUM} is not installed (Debian package chromium)`;
const TEST_TIMEOUT = 240_000;
const screenshotPath = (name: string) =>
  process.env.TRELLIS_UPDATE_SCREENSHOT === '1'
    ? join(REPO, `docs/${name}.png`)
    : join(tmpdir(), `trellis-${name}-${process.pid}.png`);
const SCREENSHOT = screenshotPath('dashboard');
/** web's workload page, with its routes, the routes of its calls, its tap and a trace open. */
const SCREENSHOT_WORKLOAD = screenshotPath('dashboard-workload');

/** An HTTPRoute on web that sends all of its requests to web: vote-bot's calls go through it. */
const WEB_ROUTE = `apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: web-all, namespace: emojivoto }
spec:
  parentRefs: [{ group: '', kind: Service, name: web, port: 8080 }]
  rules:
    - backendRefs: [{ name: web, port: 8080, weight: 100 }]
`;

interface CliEdge {
  src_namespace: string;
  src: string;
  dst_namespace: string;
  dst: string;
  secured: boolean;
}

async function launch(t: { after(fn: () => Promise<unknown>): void }): Promise<Browser> {
  const browser = await puppeteer.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
  });
  t.after(() => browser.close());
  return browser;
}

/** The number in a workload's REQUESTS cell, or null before its row shows. */
async function requestsOf(page: Page, workload: string): Promise<number | null> {
  const cell = await page.$(`tr[data-workload="${workload}"] td[data-requests]`);
  return cell === null ? null : Number(await cell.evaluate((c) => c.textContent));
}

/** Page-side: the number in web's REQUESTS cell (a string: this file has no DOM types). */
const WEB_REQUESTS = `Number(document.querySelector('tr[data-workload="emojivoto/web"] td[data-requests]')?.textContent)`;

test(
  'the dashboard shows the demo mesh live, with its real edges',
  { skip: SKIP, timeout: TEST_TIMEOUT },
  async (t) => {
    const demo = startDemo(t, ['--interval', '1000', '-o', 'json']);
    await until(
      () => stateFolder(demo.stderr()) !== undefined && demo.stderr().includes('vote-bot is up'),
      120_000,
      'the demo mesh',
      () => demo.stderr(),
    );
    const state = stateFolder(demo.stderr())!;
    const routeDir = mkdtempSync(join(tmpdir(), 'trellis-dashboard-route-'));
    t.after(() => rmSync(routeDir, { recursive: true, force: true }));
    writeFileSync(join(routeDir, 'web-all.yaml'), WEB_ROUTE);
    const applied = await runCli(['apply', '--state', state, '-f', join(routeDir, 'web-all.yaml')]);
    assert.equal(applied.code, 0, applied.stderr);

    const dashboard = startCli(t, ['dashboard', '--state', state]);
    const url = await waitFor(
      'the dashboard URL',
      async () => /^http:\/\/\S+\/dashboard(\?key=[\w-]+)?$/m.exec(dashboard.stdout())?.[0] ?? null,
    );
    const origin = new URL(url).origin;

    // What the CLI says the edges are, once all three show.
    const cliEdges = await waitFor(
      'trellis edges to show the three emojivoto edges',
      async () => {
        const out = await runCli(['edges', '--state', state, '-o', 'json']);
        assert.equal(out.code, 0, out.stderr);
        const edges = JSON.parse(out.stdout) as CliEdge[];
        return edges.length >= 3 ? edges : null;
      },
      60_000,
    );
    const edgeKeys = cliEdges.map((e) => `${e.src_namespace}/${e.src}>${e.dst_namespace}/${e.dst}`).sort();
    assert.deepEqual(edgeKeys, [
      'emojivoto/vote-bot>emojivoto/web',
      'emojivoto/web>emojivoto/emoji',
      'emojivoto/web>emojivoto/voting',
    ]);
    assert.ok(cliEdges.every((e) => e.secured));

    const browser = await launch(t);
    const page = await browser.newPage();
    await page.setViewport({ width: 1280, height: 900 });
    const requested: string[] = [];
    page.on('request', (req) => requested.push(req.url()));
    const errors: string[] = [];
    page.on('pageerror', (error) => errors.push(String(error)));
    await page.goto(`${url}#/ns/emojivoto`, { waitUntil: 'load' });

    // Every workload, with its golden metrics.
    for (const name of ['emoji', 'voting', 'web', 'vote-bot'])
      await page.waitForSelector(`tr[data-workload="emojivoto/${name}"]`, { timeout: 30_000 });
    // Live: web's request counter grows while vote-bot sends (bounded: the wait times out).
    await page.waitForFunction(`${WEB_REQUESTS} > 0`, { timeout: 30_000 });
    const before = (await requestsOf(page, 'emojivoto/web'))!;
    await page.waitForFunction(`${WEB_REQUESTS} > ${before}`, { timeout: 30_000 });
    assert.ok((await requestsOf(page, 'emojivoto/web'))! > before);
    const updates = await page.$eval('#status', (s) => Number(s.getAttribute('data-updates')));
    assert.ok(updates >= 2, `the page refreshed ${updates} times`);

    // The topology draws exactly the edges the CLI reports, secured, with a success rate and latency.
    await page.waitForFunction(
      `document.querySelectorAll('svg.topology g.edge').length >= ${edgeKeys.length}`,
      {
        timeout: 30_000,
      },
    );
    const drawn = await page.$$eval('svg.topology g.edge', (gs) =>
      gs.map((g) => ({
        key: g.getAttribute('data-edge'),
        secured: g.getAttribute('data-secured'),
        label: g.querySelector('text')?.textContent ?? '',
      })),
    );
    assert.deepEqual(drawn.map((d) => d.key).sort(), edgeKeys);
    for (const d of drawn) {
      assert.equal(d.secured, 'true', d.key!);
      assert.match(d.label, /\d+\.\d+% · p50 [\d.]+ms/, `${d.key}: ${d.label}`);
    }
    const nodes = await page.$$eval('svg.topology a.node', (as) =>
      as.map((a) => a.getAttribute('data-node')).sort(),
    );
    assert.deepEqual(nodes, ['emojivoto/emoji', 'emojivoto/vote-bot', 'emojivoto/voting', 'emojivoto/web']);
    assert.match(
      await page.$eval('[data-cli]', (c) => c.getAttribute('data-cli') ?? ''),
      /^trellis stat -n emojivoto\ntrellis edges -n emojivoto$/,
    );
    await page.screenshot({ path: SCREENSHOT, fullPage: true });
    assert.ok(statSync(SCREENSHOT).size > 10_000, 'the screenshot was written');
    if (process.env.TRELLIS_UPDATE_SCREENSHOT !== '1') rmSync(SCREENSHOT, { force: true });

    // The workload page: web's callers and callees.
    await page.goto(`${url}#/workload/emojivoto/web`, { waitUntil: 'load' });
    await page.waitForSelector('tr[data-edge-row="emojivoto/web>emojivoto/voting"]', { timeout: 30_000 });
    const rows = await page.$$eval('tr[data-edge-row]', (trs) =>
      trs.map((tr) => tr.getAttribute('data-edge-row')).sort(),
    );
    assert.deepEqual(rows, edgeKeys);
    assert.equal(await page.$eval('#workload-name', (n) => n.textContent), 'web');
    assert.match(
      await page.$eval('[data-cli]', (c) => c.getAttribute('data-cli') ?? ''),
      /trellis stat -n emojivoto deploy\/web/,
    );
    // Its live tap: requests the demo's traffic sends through web's proxy, as they happen.
    await page.waitForSelector('#tap tr[data-tap-path]', { timeout: 30_000 });
    assert.ok(Number(await page.$eval('#tap', (n) => n.getAttribute('data-tap-events'))) > 0);
    assert.match(
      await page.$eval('#tap [data-cli]', (c) => c.getAttribute('data-cli') ?? ''),
      /^trellis tap -n emojivoto deploy\/web$/,
    );

    // Its routes: the HTTPRoute applied above, accepted, its backend, and live numbers once
    // vote-bot's proxy sends through it.
    const route = '#routes [data-route="HTTPRoute/emojivoto/web-all"]';
    await page.waitForSelector(route, { timeout: 30_000 });
    assert.deepEqual(
      await page.$$eval(`${route} [data-condition]`, (cs) => cs.map((c) => c.getAttribute('data-condition'))),
      ['Accepted=True', 'ResolvedRefs=True'],
    );
    assert.match(
      await page.$eval(`${route} tr[data-backend="emojivoto/web"]`, (tr) => tr.textContent ?? ''),
      /emojivoto\/web:8080100100%/,
    );
    await page.waitForFunction(
      `Number(document.querySelector('${route} [data-route-live]')?.getAttribute('data-route-live')) > 0`,
      { timeout: 60_000 },
    );
    assert.match(
      await page.$eval(`${route} [data-route-live]`, (n) => n.textContent ?? ''),
      /\d+\.\d+% · [\d.]+ rps/,
    );
    assert.match(
      await page.$eval('#routes [data-cli]', (c) => c.getAttribute('data-cli') ?? ''),
      /^trellis routes -n emojivoto web$/,
    );
    // The routes of its calls: the Services of the workloads its edges show it calling.
    for (const callee of ['emojivoto/emoji', 'emojivoto/voting'])
      await page.waitForSelector(`#outbound-routes [data-outbound-service="${callee}"]`, { timeout: 30_000 });
    assert.match(
      await page.$eval(
        '#outbound-routes [data-outbound-service="emojivoto/voting"]',
        (n) => n.textContent ?? '',
      ),
      /seen calling it.*No route applies/,
    );
    // vote-bot's calls go by the route applied to web above.
    await page.goto(`${url}#/workload/emojivoto/vote-bot`, { waitUntil: 'load' });
    await page.waitForSelector(
      '#outbound-routes [data-outbound-service="emojivoto/web"] [data-route="HTTPRoute/emojivoto/web-all"]',
      { timeout: 30_000 },
    );
    await page.goto(`${url}#/workload/emojivoto/web`, { waitUntil: 'load' });
    // Its recent traces: the demo's requests through web, newest first; one opens with its spans.
    await page.waitForSelector('#traces tr[data-trace-id]', { timeout: 30_000 });
    assert.match(
      await page.$eval('#traces [data-cli]', (c) => c.getAttribute('data-cli') ?? ''),
      /^trellis trace --service web -n emojivoto\ntrellis trace TRACE_ID$/,
    );
    // The oldest listed: its spans have all come in by now.
    const traceId = await page.$$eval(
      '#traces tr[data-trace-id]',
      (trs) => trs.at(-1)!.getAttribute('data-trace-id') ?? '',
    );
    assert.match(traceId, /^[0-9a-f]{32}$/);
    // Its link opens it. Followed by its address, not clicked: the list is newest first and live,
    // so a click at the row's position could land on the row a newer trace pushed there.
    const link = await page.$eval(
      `#traces tr[data-trace-id="${traceId}"] a`,
      (a) => a.getAttribute('href') ?? '',
    );
    assert.equal(link, `#/workload/emojivoto/web/trace/${traceId}`);
    await page.evaluate(`location.hash = ${JSON.stringify(link)}`);
    await page.waitForSelector(`#trace[data-trace-id="${traceId}"] tr[data-span-id]`, { timeout: 30_000 });
    const spans = (await page.evaluate(
      `Array.from(document.querySelectorAll('#trace tr[data-span-id]'), (tr) => Array.from(tr.querySelectorAll('td'), (td) => td.textContent))`,
    )) as string[][];
    assert.ok(spans.length >= 2, `${spans.length} spans`);
    assert.ok(
      spans.some((cells) => cells[1] === 'web'),
      `a span of web: ${JSON.stringify(spans)}`,
    );
    assert.equal(await page.$$eval('#trace svg.span-bar rect', (r) => r.length), spans.length);
    await page.screenshot({ path: SCREENSHOT_WORKLOAD, fullPage: true });
    assert.ok(statSync(SCREENSHOT_WORKLOAD).size > 10_000, 'the screenshot was written');
    if (process.env.TRELLIS_UPDATE_SCREENSHOT !== '1') rmSync(SCREENSHOT_WORKLOAD, { force: true });
    const cli = await runCli(['trace', '--state', state, traceId]);
    assert.equal(cli.code, 0, cli.stderr);
    const kept = Number(new RegExp(`^trace ${traceId}: (\\d+) spans`).exec(cli.stdout)?.[1]);
    assert.ok(kept >= spans.length, `the CLI shows the trace the page showed: ${cli.stdout}`);

    assert.deepEqual(errors, [], 'no script errors');
    const foreign = requested.filter((u) => !u.startsWith(origin + '/'));
    assert.deepEqual(foreign, [], 'the page loads nothing from anywhere but the control plane');
  },
);

/**
 * A page whose requests are answered here: the dashboard's files, then `answer(path)` (a JSON
 * answer, or null for an empty 404).
 */
async function servedPage(
  browser: Browser,
  answer: (path: string) => { status: number; body: unknown } | null,
): Promise<Page> {
  const files: Record<string, [string, string]> = {
    '/dashboard': ['text/html', DASHBOARD_HTML],
    '/dashboard/app.js': ['text/javascript', DASHBOARD_SCRIPT],
    '/dashboard/style.css': ['text/css', DASHBOARD_CSS],
  };
  const page = await browser.newPage();
  await page.setRequestInterception(true);
  page.on('request', (req) => {
    const path = new URL(req.url()).pathname;
    const file = files[path];
    if (file !== undefined) return void req.respond({ status: 200, contentType: file[0], body: file[1] });
    const json = answer(path);
    if (json !== null)
      return void req.respond({
        status: json.status,
        contentType: 'application/json',
        body: JSON.stringify(json.body),
      });
    return void req.respond({ status: 404, body: '' });
  });
  return page;
}

const TRACE_ID = '4bf92f3577b34da6a3ce929d0e0e4736';

test('names that look like markup stay text', { skip: SKIP, timeout: 60_000 }, async (t) => {
  const evil = '<img src=x onerror="window.__pwned=1">';
  const api: Record<string, unknown> = {
    '/api/stat': [
      {
        namespace: evil,
        name: evil,
        meshed: '1/1',
        success: 1,
        rps: 1,
        latency_p50_ms: 1,
        latency_p95_ms: 2,
        latency_p99_ms: 3,
        tcp_conn: 1,
      },
    ],
    '/api/edges': [
      {
        src_namespace: evil,
        src: evil,
        dst_namespace: evil,
        dst: 'b"><script>window.__pwned=2</script>',
        client_identity: evil,
        server_identity: null,
        secured: false,
        no_tls_reason: evil,
        connections: 1,
        seen_by: 'client',
      },
    ],
    '/api/workloads': [{ namespace: evil, name: evil, identities: [evil], requests_total: 5, instances: 1 }],
    '/api/workload-routes': {
      namespace: evil,
      workload: evil,
      services: [
        {
          namespace: evil,
          service: evil,
          ports: [8080],
          routes: [
            {
              kind: 'HTTPRoute',
              namespace: evil,
              name: evil,
              role: 'producer',
              creationTimestamp: '2026-01-01T00:00:00.000Z',
              parents: [
                {
                  parentRef: { group: '', kind: 'Service', name: evil },
                  controllerName: 'trellis.dev/mesh',
                  conditions: [{ type: 'Accepted', status: 'False', reason: evil, message: evil }],
                },
              ],
              rules: [
                {
                  index: 0,
                  name: evil,
                  matches: [evil],
                  filters: [evil],
                  backends: [
                    { namespace: evil, name: evil, port: 8080, weight: 1, share: 100, resolved: false },
                  ],
                  timeouts: null,
                  retry: null,
                },
              ],
            },
          ],
        },
      ],
    },
    '/api/route-stats': { window_s: null, routes: [], backends: [] },
    '/api/traces': [
      {
        trace_id: TRACE_ID,
        root_service: evil,
        root_name: evil,
        services: [evil],
        spans: 1,
        start_ms: 0,
        duration_ms: 1,
        error: true,
      },
    ],
    [`/api/traces/${TRACE_ID}`]: {
      trace_id: TRACE_ID,
      spans: [
        {
          traceId: TRACE_ID,
          spanId: '00f067aa0ba902b7',
          parentSpanId: '',
          name: evil,
          kind: 'server',
          startMs: 0,
          endMs: 1,
          attributes: { 'url.path': evil, 'trellis.route': evil, 'trellis.proxy_error': evil },
          error: true,
          statusMessage: evil,
          service: evil,
          namespace: evil,
        },
      ],
    },
  };
  // The Services it calls: the same names, as outbound.
  const routesOf = api['/api/workload-routes'] as { services: object[]; outbound?: object[] };
  routesOf.outbound = routesOf.services.map((service) => ({ ...service, known_by: ['calls'] }));
  const browser = await launch(t);
  const page = await servedPage(browser, (path) => (path in api ? { status: 200, body: api[path] } : null));
  await page.goto('http://dashboard.test/dashboard#/', { waitUntil: 'load' });
  await page.waitForSelector('svg.topology g.edge');
  assert.equal(await page.evaluate('window.__pwned'), undefined);
  assert.equal(await page.$$eval('main img, main script', (n) => n.length), 0);
  const text = await page.$eval('main', (m) => m.textContent ?? '');
  assert.ok(text.includes(evil), 'the name shows as the text it is');
  // The workload view of such a name, through the hash route.
  await page.goto(
    `http://dashboard.test/dashboard#/workload/${encodeURIComponent(evil)}/${encodeURIComponent(evil)}`,
  );
  await page.waitForSelector('#workload-name');
  assert.equal(await page.$eval('#workload-name', (n) => n.textContent), evil);
  assert.equal(await page.evaluate('window.__pwned'), undefined);
  // Its routes and traces, one open: every name from the mesh stays text there too.
  await page.goto(
    `http://dashboard.test/dashboard#/workload/${encodeURIComponent(evil)}/${encodeURIComponent(evil)}/trace/${TRACE_ID}`,
  );
  await page.waitForSelector('#routes [data-route] tr[data-backend]');
  await page.waitForSelector('#trace tr[data-span-id]');
  await page.waitForSelector(`#traces tr[data-trace-id="${TRACE_ID}"]`);
  assert.equal(await page.evaluate('window.__pwned'), undefined);
  assert.equal(await page.$$eval('main img, main script', (n) => n.length), 0);
  assert.ok((await page.$eval('#routes', (m) => m.textContent ?? '')).includes(evil));
  await page.waitForSelector('#outbound-routes [data-route] tr[data-backend]');
  assert.ok((await page.$eval('#outbound-routes', (m) => m.textContent ?? '')).includes(evil));
  assert.ok((await page.$eval('#trace', (m) => m.textContent ?? '')).includes(evil));
});

test(
  'the workload page says why it shows no routes or traces',
  { skip: SKIP, timeout: 60_000 },
  async (t) => {
    const browser = await launch(t);
    const empty = { status: 200, body: [] };
    let traces: { status: number; body: unknown } = {
      status: 401,
      body: {
        error: 'GET /api/traces shows live requests and needs an authenticated operator (no bearer token)',
      },
    };
    const page = await servedPage(browser, (path) => {
      if (path === '/api/stat' || path === '/api/edges' || path === '/api/workloads') return empty;
      if (path === '/api/workload-routes')
        return { status: 200, body: { namespace: 'shop', workload: 'bot', services: [] } };
      if (path === '/api/traces') return traces;
      return null;
    });
    await page.goto('http://dashboard.test/dashboard#/workload/shop/bot', { waitUntil: 'load' });
    await page.waitForSelector('#traces [data-traces="refused"]');
    assert.match(
      await page.$eval('#traces [data-traces]', (n) => n.textContent ?? ''),
      /operators only: open this page through trellis dashboard .*no bearer token/,
    );
    assert.match(await page.$eval('#routes', (n) => n.textContent ?? ''), /bot backs no Service in shop/);
    // A control plane without the trace store (trellis control): how to turn tracing on.
    traces = { status: 404, body: { error: 'not found' } };
    await page.waitForSelector('#traces [data-traces="absent"]', { timeout: 10_000 });
    assert.match(
      await page.$eval('#traces', (n) => n.textContent ?? ''),
      /trellis install --trace-collector URL/,
    );
    // None kept yet.
    traces = empty;
    await page.waitForSelector('#traces [data-traces="none"]', { timeout: 10_000 });
    assert.match(await page.$eval('#traces', (n) => n.textContent ?? ''), /--trace-sample-ratio/);
  },
);
