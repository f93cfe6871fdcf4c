// The control plane's Prometheus service discovery answer and the scrape configuration of
// `trellis prometheus-config`: one labelled group per proxy with an admin listener, sorted; the
// YAML points at the discovery endpoint and the control plane. Prometheus itself reads both in
// test/long/prometheus.test.ts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { prometheusTargets } from '../../src/control/metrics/prometheus-sd.ts';
import { prometheusConfig, prometheusDuration } from '../../src/cli/prometheus-config.ts';

test('prometheusTargets: one group per instance with a proxy, sorted, labels without a direction', () => {
  const target = (namespace: string, workload: string, instance: string, admin: string | null) => ({
    namespace,
    workload,
    instance,
    admin,
    meshed: admin !== null,
  });
  assert.deepEqual(
    prometheusTargets([
      target('shop', 'web', 'web-b', '127.0.0.1:2'),
      target('shop', 'web', 'web-a', '127.0.0.1:1'),
      target('shop', 'db', 'db-a', null),
      target('default', 'zed', 'zed-a', '[::1]:3'),
    ]),
    [
      { targets: ['[::1]:3'], labels: { namespace: 'default', workload: 'zed', pod: 'zed-a' } },
      { targets: ['127.0.0.1:1'], labels: { namespace: 'shop', workload: 'web', pod: 'web-a' } },
      { targets: ['127.0.0.1:2'], labels: { namespace: 'shop', workload: 'web', pod: 'web-b' } },
    ],
  );
  assert.deepEqual(prometheusTargets([]), []);
});

test('prometheusConfig: discovery of the proxies and a static job for the control plane', () => {
  const yaml = prometheusConfig('http://127.0.0.1:8084', 15_000);
  assert.match(yaml, /- job_name: trellis-proxies\n {4}scrape_interval: 15s\n/);
  assert.match(
    yaml,
    /http_sd_configs:\n {6}- url: http:\/\/127\.0\.0\.1:8084\/api\/prometheus\/targets\n {8}refresh_interval: 15s\n/,
  );
  assert.match(yaml, /- targets: \['127\.0\.0\.1:8084'\]/);
  assert.equal(prometheusDuration(1000), '1s');
  assert.equal(prometheusDuration(90_000), '90s');
  assert.equal(prometheusDuration(1500), '1500ms');
});
