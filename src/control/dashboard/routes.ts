// The dashboard's routes on the control plane's HTTP API (src/control/server.ts): the page at
// /dashboard, its script and style sheet. Open like the other read APIs; the page only reads
// (GET /api/stat, /api/edges, /api/workloads). Served with a Content-Security-Policy that lets
// the page load its own script and style and talk to its own origin, nothing else: nothing is
// fetched from the internet, and a workload name that looks like markup cannot run as script.
import type { ServerResponse } from 'node:http';
import { DASHBOARD_SCRIPT } from './app-script.ts';
import { DASHBOARD_CSS, DASHBOARD_HTML } from './page.ts';

export const DASHBOARD_PATH = '/dashboard';

const FILES: Readonly<Record<string, { readonly type: string; readonly body: string }>> = {
  [DASHBOARD_PATH]: { type: 'text/html; charset=utf-8', body: DASHBOARD_HTML },
  [`${DASHBOARD_PATH}/`]: { type: 'text/html; charset=utf-8', body: DASHBOARD_HTML },
  [`${DASHBOARD_PATH}/app.js`]: { type: 'text/javascript; charset=utf-8', body: DASHBOARD_SCRIPT },
  [`${DASHBOARD_PATH}/style.css`]: { type: 'text/css; charset=utf-8', body: DASHBOARD_CSS },
};

export const DASHBOARD_ROUTES: readonly string[] = Object.keys(FILES);

const CSP =
  "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; " +
  "base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/** Answers GET/HEAD of a dashboard path (true), or leaves it (false). */
export function serveDashboard(path: string, res: ServerResponse): boolean {
  const file = FILES[path];
  if (file === undefined) return false;
  res.writeHead(200, {
    'content-type': file.type,
    'content-security-policy': CSP,
    'x-content-type-options': 'nosniff',
    'referrer-policy': 'no-referrer',
    'cache-control': 'no-cache',
  });
  res.end(file.body);
  return true;
}
