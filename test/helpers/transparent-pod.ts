// Processes in a "pod" (a network namespace, test/e2e/netns.ts) for the transparent-mode tests:
// started with an environment free of proxy settings (interception must need none), each one
// ready when it prints {"event":"ready"} on stdout; the proxy runs as its own uid, as `trellis init`
// expects, with the listeners the Kubernetes injection gives it.
import type { ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import type { Netns } from '../e2e/netns.ts';

export const REPO = new URL('../..', import.meta.url).pathname;
export const MAIN = new URL('../../src/cli/main.ts', import.meta.url).pathname;
export const NODE = process.execPath;
export const PROXY_UID = 2102;

/** The environment without any proxy settings: interception must need none. */
export const APP_ENV = Object.fromEntries(
  Object.entries(process.env).filter(([k]) => !/^(https?|no|all)_proxy$/i.test(k)),
);

export interface Started {
  readonly child: ChildProcess;
  /** Every stdout line so far (the last 8,000 characters kept for logs are a separate thing). */
  readonly lines: string[];
  readonly logs: () => string;
}

/** Starts a process in a namespace and waits for its {"event":"ready"} line on stdout. */
export async function startUntilReady(ns: Netns, label: string, argv: string[]): Promise<Started> {
  const child = ns.spawn(argv, { cwd: REPO, env: APP_ENV });
  let stderr = '';
  let stdout = '';
  const lines: string[] = [];
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr = (stderr + d).slice(-8000)));
  const logs = () => `${label} stdout:\n${stdout}\n${label} stderr:\n${stderr}`;
  const ready = new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${label} not ready after 20 s\n${logs()}`)), 20_000);
    createInterface({ input: child.stdout! }).on('line', (line) => {
      stdout = (stdout + line + '\n').slice(-8000);
      lines.push(line);
      try {
        if ((JSON.parse(line) as { event?: string }).event === 'ready') {
          clearTimeout(timer);
          resolve();
        }
      } catch {
        // not a JSON line: only kept for the logs
      }
    });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`${label} exited (${code ?? signal}) before it was ready\n${logs()}`));
    });
  });
  await ready;
  return { child, lines, logs };
}

/** `trellis proxy --mode transparent` as the proxy uid, inbound 0.0.0.0:4143, outbound 127.0.0.1:4140. */
export function startTransparentProxy(ns: Netns, label: string): Promise<Started> {
  const uid = `${PROXY_UID}`;
  return startUntilReady(ns, label, [
    'setpriv',
    `--reuid=${uid}`,
    `--regid=${uid}`,
    '--clear-groups',
    NODE,
    MAIN,
    'proxy',
    '--mode',
    'transparent',
    '--inbound-listen',
    '0.0.0.0:4143',
    '--outbound-listen',
    '127.0.0.1:4140',
    '--admin-listen',
    '0.0.0.0:4191',
  ]);
}
