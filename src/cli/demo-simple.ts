// `trellis demo --simple`: the proxy on its own, no control plane. Two services from
// examples/demo-app/ ("web", which calls "quotes" for each request through its own outbound
// proxy) each beside a `trellis proxy`; the demo sends web a steady stream of requests and shows
// each workload's golden metrics from its proxy's /metrics. web is told where quotes' proxy is.
import http from 'node:http';
import { WorkloadWindow, type WorkloadRow } from './live-view.ts';
import { parsePrometheusText } from '../core/prom-parse.ts';
import {
  clock,
  EXAMPLES_DIR,
  fetchText,
  noteUp,
  type DemoChild,
  type DemoScenario,
  type StartChild,
} from './demo-processes.ts';

/** `trellis proxy` beside an app, every listener on a free loopback port. */
function proxyArgs(appListen: string): string[] {
  const any = '127.0.0.1:0';
  const appPort = appListen.slice(appListen.lastIndexOf(':') + 1);
  // prettier-ignore
  return [
    'proxy', '--inbound-listen', any, '--outbound-listen', any, '--admin-listen', any,
    '--app-port', appPort, '--log-level', 'warn', '--drain-grace-ms', '2000',
  ];
}

/**
 * quotes and web, then a proxy beside each; then web learns where its outbound proxy and quotes'
 * inbound proxy are. Resolves with where the traffic goes and where each proxy's /metrics is.
 */
async function startWorkloads(start: StartChild) {
  const dir = EXAMPLES_DIR + 'demo-app/';
  const exit = ['--exit-on-stdin-close'];
  const quotes = start('quotes', dir + 'quotes.ts', exit);
  const web = start('web', dir + 'web.ts', exit);
  const [quotesApp, webApp] = await Promise.all([quotes.ready, web.ready]);
  const quotesProxy = start('quotes proxy', null, proxyArgs(quotesApp.listen!));
  const webProxy = start('web proxy', null, proxyArgs(webApp.listen!));
  const [qp, wp] = await Promise.all([quotesProxy.ready, webProxy.ready]);
  web.proc.stdin!.write(JSON.stringify({ httpProxy: wp.outbound, quotes: qp.inbound }) + '\n');
  const up: [DemoChild, Record<string, string>][] = [
    [quotes, quotesApp],
    [web, webApp],
    [quotesProxy, qp],
    [webProxy, wp],
  ];
  for (const [child, ready] of up) noteUp(child, ready);
  return { webInbound: wp.inbound!, admins: { web: wp.admin!, quotes: qp.admin! } };
}

export class SimpleDemo implements DemoScenario {
  private readonly rate: number;
  private readonly windowMs: number;
  private readonly agent = new http.Agent({ keepAlive: true, maxSockets: 4 });
  private admins: [string, string][] = [];
  private windows: WorkloadWindow[] = [];
  private generator: TrafficGenerator | undefined;

  constructor(rate: number, windowMs: number) {
    this.rate = rate;
    this.windowMs = windowMs;
  }

  async start(start: StartChild): Promise<void> {
    const started = await startWorkloads(start);
    this.admins = Object.entries(started.admins);
    this.windows = this.admins.map(([name]) => new WorkloadWindow(name, 'inbound', this.windowMs));
    await this.scrape();
    this.generator = new TrafficGenerator(started.webInbound, this.rate);
    this.generator.start();
  }

  async rows(): Promise<WorkloadRow[]> {
    await this.scrape();
    return this.windows.map((w) => w.row());
  }

  title(redraw: boolean): string[] {
    const seconds = Math.round(this.windowMs / 1000);
    return redraw
      ? [
          `Trellis demo: ${this.rate} req/s -> web -> quotes, each behind its proxy. Ctrl-C to stop.`,
          `Inbound traffic of each workload over the last ${seconds} s, at ${clock()}:`,
          '',
        ]
      : [`${clock()}  inbound, last ${seconds} s`];
  }

  stopTraffic(): void {
    this.generator?.stop();
    this.agent.destroy();
  }

  strays(): number[] {
    return [];
  }

  async cleanup(): Promise<void> {}

  private async scrape(): Promise<void> {
    const at = Date.now();
    const pages = await Promise.all(this.admins.map(([, admin]) => fetchText(this.agent, admin, '/metrics')));
    this.windows.forEach((w, i) => w.record(pages[i] === null ? null : parsePrometheusText(pages[i]!), at));
  }
}

/**
 * Sends `rate` requests a second to web, spread over 10 ticks a second: 4 in 5 to / (a random
 * quote), 1 in 5 to /today. At most 64 requests are in flight; beyond that, ticks skip sending
 * rather than queue.
 */
class TrafficGenerator {
  private readonly address: string;
  private readonly rate: number;
  private readonly agent = new http.Agent({ keepAlive: true, maxSockets: 16 });
  private timer: NodeJS.Timeout | undefined;
  private budget = 0;
  private inFlight = 0;

  constructor(address: string, rate: number) {
    this.address = address;
    this.rate = rate;
  }

  start(): void {
    this.timer = setInterval(() => this.tick(), 100);
  }

  stop(): void {
    clearInterval(this.timer);
    this.agent.destroy();
  }

  private tick(): void {
    this.budget = Math.min(this.budget + this.rate / 10, this.rate);
    while (this.budget >= 1 && this.inFlight < 64) {
      this.budget -= 1;
      this.inFlight++;
      const path = Math.random() < 0.8 ? '/' : '/today';
      void fetchText(this.agent, this.address, path).then(() => this.inFlight--);
    }
  }
}
