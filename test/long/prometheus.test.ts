// A real Prometheus (Debian's /usr/bin/prometheus) scrapes a mesh of `trellis up` and `trellis
// run`, configured by `trellis prometheus-config`: it finds the proxy through the control plane's
// HTTP service discovery, labels it with namespace, workload and pod, scrapes it and the control
// plane, and answers PromQL through its HTTP API (the request rate of the workload in both
// directions, `up` of each target, every query of the Grafana dashboard). Both /metrics pages pass
// `promtool check metrics` and hold only families docs/metrics.md documents.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { NODE, REPO } from '../helpers/proxy-process.ts';
import { freePort, runCli, startCli, waitFor } from '../helpers/cli.ts';
import { readyRegistration, reaper, reportedPids, startUp } from '../helpers/trellis-run.ts';
import { grafanaDashboard, undocumented } from '../helpers/metrics-docs.ts';
import { removeTempDir } from '../helpers/temp-dir.ts';

const PROMETHEUS = '/usr/bin/prometheus';
const PROMTOOL = '/usr/bin/promtool';
const HELLO = join(REPO, 'test/fixtures/hello-server.ts');

interface PromVector {
  metric: Record<string, string>;
  value: [number, string];
}

/** An instant query through Prometheus's HTTP API; throws unless Prometheus says success. */
async function query(base: string, promql: string): Promise<PromVector[]> {
  const res = await fetch(`${base}/api/v1/query?query=${encodeURIComponent(promql)}`);
  const body = (await res.json()) as { status: string; error?: string; data: { result: PromVector[] } };
  if (body.status !== 'success') throw new Error(`${promql}: ${body.error}`);
  return body.data.result;
}

function promtoolCheck(page: string): void {
  const check = spawnSync(PROMTOOL, ['check', 'metrics'], { input: page, encoding: 'utf8' });
  assert.equal(check.status, 0, `promtool: ${check.stdout}${check.stderr}`);
  assert.equal(check.stdout + check.stderr, '', 'promtool has nothing to say');
}

test('Prometheus discovers, scrapes and queries the mesh', { timeout: 180_000 }, async (t) => {
  const root = await mkdtemp(join(tmpdir(), 'trellis-prometheus-'));
  t.after(() => removeTempDir(root));
  const up = await startUp(t, root);

  // Two workloads: hello in shop (its traffic is what the queries look for), idle in default.
  const [appPort, upstreamPort, idlePort] = [await freePort(), await freePort(), await freePort()];
  // prettier-ignore
  const run = startCli(t, [
    'run', '--state', root, '--name', 'hello', '--namespace', 'shop', '--port', String(appPort),
    '--upstream', `hello.shop:80=${upstreamPort}`, '--', NODE, HELLO, String(appPort),
  ]);
  // prettier-ignore
  const idleRun = startCli(t, [
    'run', '--state', root, '--name', 'idle', '--port', String(idlePort), '--', NODE, HELLO, String(idlePort),
  ]);
  const registration = await readyRegistration(root, 'hello', 'shop');
  const idle = await readyRegistration(root, 'idle');
  const kill = reaper(t);
  for (const r of [run, idleRun]) {
    const pids = await waitFor('the pids of trellis run', async () => reportedPids(r.stderr()));
    kill([pids.app, pids.proxy]);
  }
  const pod = registration.file.replace(/\.json$/, '');

  // The control plane's service discovery: one group per proxy, labels without a direction.
  const sd = await fetch(`http://${up.http}/api/prometheus/targets`);
  assert.equal(sd.status, 200);
  assert.match(sd.headers.get('content-type') ?? '', /^application\/json/);
  assert.deepEqual(await sd.json(), [
    {
      targets: [idle.admin],
      labels: { namespace: 'default', workload: 'idle', pod: idle.file.replace(/\.json$/, '') },
    },
    { targets: [registration.admin], labels: { namespace: 'shop', workload: 'hello', pod } },
  ]);

  // `trellis stat`'s window and direction are checked by the control plane too.
  for (const bad of ['window=11m', 'window=soon', 'direction=sideways']) {
    const res = await fetch(`http://${up.http}/api/stat?${bad}`);
    assert.equal(res.status, 400, bad);
    assert.match(((await res.json()) as { error: string }).error, /^(window|direction): /);
  }

  // One request each way first, so that every family has series to check.
  assert.equal(await (await fetch(`http://127.0.0.1:${upstreamPort}/first`)).text(), 'hello /first\n');
  const proxyPage = await (await fetch(`http://${registration.admin}/metrics`)).text();
  const controlPage = await (await fetch(`http://${up.http}/metrics`)).text();
  assert.match(proxyPage, /trellis_identity_cert_expiry_timestamp_seconds \d+/, 'the proxy has its identity');
  assert.match(controlPage, /^trellis_identity_certificates_issued_total [1-9]/m);
  for (const page of [proxyPage, controlPage]) {
    promtoolCheck(page);
    assert.deepEqual(undocumented(page), []);
  }

  // Prometheus with the configuration `trellis prometheus-config` prints.
  const config = await runCli(['prometheus-config', '--state', root, '--scrape-interval', '1s']);
  assert.equal(config.code, 0, config.stderr);
  assert.match(config.stdout, new RegExp(`url: http://${up.http}/api/prometheus/targets`));
  const configFile = join(root, 'prometheus.yml');
  await writeFile(configFile, config.stdout);
  const checked = spawnSync(PROMTOOL, ['check', 'config', configFile], { encoding: 'utf8' });
  assert.equal(checked.status, 0, checked.stdout + checked.stderr);

  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  // prettier-ignore
  const prometheus = spawn(PROMETHEUS, [
    `--config.file=${configFile}`, `--storage.tsdb.path=${join(root, 'tsdb')}`,
    `--web.listen-address=127.0.0.1:${port}`, '--log.level=warn', '--storage.tsdb.retention.time=1h',
  ], { cwd: root, stdio: ['ignore', 'ignore', 'pipe'] });
  let promLog = '';
  prometheus.stderr.on('data', (d: Buffer) => (promLog = (promLog + d.toString()).slice(-4000)));
  const exited = once(prometheus, 'exit');
  t.after(async () => {
    if (prometheus.exitCode === null && prometheus.signalCode === null) {
      prometheus.kill('SIGTERM');
      const timer = setTimeout(() => prometheus.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(timer);
    }
  });
  await waitFor('prometheus to be ready', async () => {
    if (prometheus.exitCode !== null) throw new Error(`prometheus exited: ${promLog}`);
    const res = await fetch(`${base}/-/ready`).catch(() => null);
    return res?.status === 200 ? true : null;
  });

  // Bounded traffic (10 requests a round, at most 60 rounds) through the outbound listener (and so
  // through the inbound one too) until Prometheus has a rate for both directions.
  let rounds = 0;
  const rates = await waitFor(
    'prometheus to see the traffic',
    async () => {
      if (++rounds > 60) throw new Error(`no rate after 60 rounds; prometheus: ${promLog}`);
      for (let i = 0; i < 10; i++) await (await fetch(`http://127.0.0.1:${upstreamPort}/n${i}`)).text();
      const result = await query(
        base,
        'sum by (namespace, workload, pod, direction) (rate(trellis_response_total{job="trellis-proxies"}[5s])) > 0',
      );
      return result.length === 2 ? result : null;
    },
    90_000,
  );
  assert.deepEqual(
    rates.map((r) => r.metric).sort((a, b) => a.direction!.localeCompare(b.direction!)),
    [
      { namespace: 'shop', workload: 'hello', pod, direction: 'inbound' },
      { namespace: 'shop', workload: 'hello', pod, direction: 'outbound' },
    ],
  );

  const upSeries = await waitFor('every target scraped', async () => {
    const series = await query(base, 'up == 1');
    return series.length === 3 ? series : null;
  });
  assert.deepEqual(
    upSeries.map((s) => [s.metric.job, s.metric.namespace, s.metric.workload ?? s.metric.component]).sort(),
    [
      ['trellis-control-plane', undefined, 'control-plane'],
      ['trellis-proxies', 'default', 'idle'],
      ['trellis-proxies', 'shop', 'hello'],
    ],
  );

  // Every query of the Grafana dashboard is valid PromQL; the golden ones have an answer.
  for (const panel of grafanaDashboard().panels) {
    for (const target of panel.targets) {
      const promql = target.expr
        .replaceAll('$__rate_interval', '10s')
        .replace(/\$(namespace|workload|direction)\b/g, '.*');
      const result = await query(base, promql);
      if (/^(Success rate|Requests per second|Latency p)/.test(panel.title)) {
        assert.ok(result.length > 0, `${panel.title}: no answer to ${promql}`);
      }
    }
  }
  assert.equal(await run.stop(), 0, run.stderr());
  assert.equal(await idleRun.stop(), 0, idleRun.stderr());
});
