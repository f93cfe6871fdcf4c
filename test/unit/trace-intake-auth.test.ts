// Who may add spans to the control plane's embedded trace collector (src/control/traces/
// component.ts, token.ts): a real control plane on loopback. Over OTLP/HTTP (POST /v1/traces)
// and OTLP/gRPC (TraceService/Export on its gRPC server) a sender without the trace token, or
// with a wrong one, is refused (401 / UNAUTHENTICATED), counted, and adds nothing; the proxies'
// exporter with the token's file adds its spans over both transports. The operator token does not
// open it either: the two tokens grant different things.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LocalWatcher } from '../../src/control/discovery/local.ts';
import { localCatalog, startControlPlane } from '../../src/control/server.ts';
import { traceCollectorComponent } from '../../src/control/traces/component.ts';
import { loadOrCreateTraceToken, traceTokenPath } from '../../src/control/traces/token.ts';
import { silentLogger } from '../../src/core/log.ts';
import { validateProxyConfig } from '../../src/proxy/config.ts';
import { ProxyMetrics } from '../../src/proxy/telemetry/metrics.ts';
import { SpanExporter } from '../../src/proxy/telemetry/trace-export.ts';
import { spanTransport } from '../../src/proxy/telemetry/trace-setup.ts';
import { encodeTraceRequest } from '../../src/proxy/telemetry/trace-otlp.ts';
import { TraceSpan, type FinishedSpan } from '../../src/proxy/telemetry/trace-span.ts';
import { removeTempDir } from '../helpers/temp-dir.ts';

const OPERATOR_TOKEN = 'k3Z0m1qO2xQv9Rr8Tt7Uu6Vv5Ww4Xx3Yy2Zz1Aa0Bb';

function span(traceId: string, path: string): FinishedSpan {
  const s = new TraceSpan('server', traceId, '00f067aa0ba902b7', null, '', Date.now() - 5, 'ua');
  return {
    span: s,
    name: 'GET',
    endMs: Date.now(),
    attributes: ['url.path', path],
    error: false,
    statusMessage: '',
  };
}

const RESOURCE = {
  attributes: [['service.name', 'web']] as [string, string][],
  scopeName: 't',
  scopeVersion: '',
};

async function startPlane(t: { after(fn: () => unknown): void }) {
  const root = await mkdtemp(join(tmpdir(), 'trellis-trace-auth-'));
  t.after(() => removeTempDir(root));
  const token = await loadOrCreateTraceToken(root, () => undefined);
  const collector = traceCollectorComponent({ log: silentLogger, token });
  const plane = await startControlPlane({
    watcher: new LocalWatcher({ root }),
    catalog: localCatalog(root),
    grpcListen: '127.0.0.1:0',
    httpListen: '127.0.0.1:0',
    components: [collector],
    operatorToken: OPERATOR_TOKEN,
  });
  t.after(() => plane.close());
  return { root, token, plane, store: collector.store };
}

/** Exports `spans` as a proxy would, with `tokenFile` when given; resolves with its metrics. */
async function exportAs(collector: string, spans: FinishedSpan[], tokenFile?: string): Promise<ProxyMetrics> {
  const metrics = new ProxyMetrics();
  const tracing = validateProxyConfig({
    tracing: { collector, ...(tokenFile === undefined ? {} : { bearerTokenFile: tokenFile }) },
  }).tracing;
  const e = new SpanExporter(
    {
      collector,
      resource: RESOURCE,
      maxQueuedSpans: 10,
      maxBatchSpans: 10,
      batchDelayMs: 1,
      exportTimeoutMs: 5000,
      metrics,
      log: silentLogger,
    },
    spanTransport({ ...tracing, collector }),
  );
  for (const s of spans) e.add(s);
  await e.close(5000);
  return metrics;
}

const count = (m: ProxyMetrics, name: string): number =>
  m
    .render()
    .split('\n')
    .filter((l) => l.startsWith(name))
    .reduce((sum, l) => sum + Number(l.slice(l.lastIndexOf(' ') + 1)), 0);

test('the trace token: made once, 0600, kept across restarts', async (t) => {
  const root = await mkdtemp(join(tmpdir(), 'trellis-trace-token-'));
  t.after(() => removeTempDir(root));
  const first = await loadOrCreateTraceToken(root, () => undefined);
  assert.match(first, /^[A-Za-z0-9_-]{43}$/);
  assert.equal((await stat(traceTokenPath(root))).mode & 0o777, 0o600);
  assert.equal(await loadOrCreateTraceToken(root, () => undefined), first);
  await writeFile(traceTokenPath(root), 'short\n');
  await assert.rejects(
    loadOrCreateTraceToken(root, () => undefined),
    { code: 'TRELLIS_ERR_TRACE_TOKEN' },
  );
});

test('POST /v1/traces without the trace token (or with a wrong one, or the operator token) is refused and adds nothing', async (t) => {
  const { plane, store, token } = await startPlane(t);
  const body = encodeTraceRequest(RESOURCE, [span('1'.repeat(32), '/forged')]);
  const post = (headers: Record<string, string>) =>
    fetch(`http://${plane.http}/v1/traces`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-protobuf', ...headers },
      body,
    });
  const none = await post({});
  assert.equal(none.status, 401);
  assert.equal(none.headers.get('www-authenticate'), 'Bearer realm="trellis-traces"');
  assert.match(((await none.json()) as { error: string }).error, /trace token \(no bearer token\)/);
  for (const wrong of [token.slice(0, -1) + (token.endsWith('A') ? 'B' : 'A'), OPERATOR_TOKEN]) {
    const refused = await post({ authorization: `Bearer ${wrong}` });
    assert.equal(refused.status, 401);
    await refused.body?.cancel();
  }
  assert.deepEqual(store.size, { traces: 0, spans: 0 });
  const metrics = await (await fetch(`http://${plane.http}/metrics`)).text();
  assert.match(metrics, /trellis_control_trace_unauthenticated_total\{reason="missing"\} 1/);
  assert.match(metrics, /trellis_control_trace_unauthenticated_total\{reason="invalid"\} 2/);

  const ok = await post({ authorization: `Bearer ${token}` });
  assert.equal(ok.status, 200);
  assert.deepEqual(store.size, { traces: 1, spans: 1 });
});

test('proxies with the token file export over OTLP/HTTP and OTLP/gRPC; without it they are refused', async (t) => {
  const { plane, store, root } = await startPlane(t);
  const tokenFile = traceTokenPath(root);
  for (const [collector, n] of [
    [`http://${plane.http}`, 'a'],
    [`grpc://${plane.grpc}`, 'b'],
  ] as const) {
    const refused = await exportAs(collector, [span(n.repeat(32), '/no-token')]);
    assert.equal(count(refused, 'trellis_trace_spans_dropped_total'), 1, `${collector}: refused and counted`);
    assert.equal(store.trace(n.repeat(32)), null);
    const accepted = await exportAs(
      collector,
      [span(n.repeat(32), '/ok'), span(n.repeat(32), '/ok2')],
      tokenFile,
    );
    assert.equal(count(accepted, 'trellis_trace_spans_exported_total'), 2, `${collector}: exported`);
    assert.equal(store.trace(n.repeat(32))?.length, 2);
  }
  const metrics = await (await fetch(`http://${plane.http}/metrics`)).text();
  assert.match(metrics, /trellis_control_trace_unauthenticated_total\{reason="missing"\} 2/);
});
