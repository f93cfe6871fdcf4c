// The dashboard's HTML shell and style sheet (its script is app-script.ts): static text, no data;
// the script fills #namespaces, #status and #main from the control plane's read APIs.
export const DASHBOARD_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Trellis dashboard</title>
<link rel="stylesheet" href="/dashboard/style.css">
<script src="/dashboard/app.js" defer></script>
</head>
<body>
<header>
<a class="brand" href="#/">Trellis</a>
<nav id="namespaces" aria-label="namespaces"></nav>
<span id="status" data-updates="0">connecting</span>
</header>
<main id="main"><p>Loading...</p></main>
</body>
</html>
`;

export const DASHBOARD_CSS = `
body { font: 14px/1.4 system-ui, sans-serif; margin: 0; color: #1b1f24; background: #f6f8fa; }
header { display: flex; align-items: center; gap: 16px; padding: 10px 20px; background: #24292f; color: #fff; }
header a { color: #c9d1d9; text-decoration: none; }
header a.current { color: #fff; font-weight: 600; border-bottom: 2px solid #58a6ff; }
.brand { font-weight: 700; font-size: 18px; color: #fff !important; }
nav { display: flex; gap: 12px; flex: 1; flex-wrap: wrap; }
#status.ok { color: #7ee787; } #status.bad { color: #ff7b72; }
main { padding: 10px 20px 40px; }
h2 { margin: 10px 0 6px; } h3 { margin: 18px 0 6px; }
.cli { background: #fff; border: 1px solid #d0d7de; border-radius: 6px; padding: 6px 10px; display: inline-flex; gap: 14px; flex-wrap: wrap; }
.cli code { background: #f0f3f6; padding: 1px 6px; border-radius: 4px; }
.legend { margin: 4px 10px 8px; color: #57606a; font-size: 12px; }
.cli-label { color: #57606a; } code { font: 13px ui-monospace, monospace; }
table { border-collapse: collapse; background: #fff; border: 1px solid #d0d7de; }
th, td { padding: 4px 10px; text-align: left; border-bottom: 1px solid #eaeef2; font-variant-numeric: tabular-nums; }
th { background: #f0f3f6; font-size: 12px; color: #57606a; }
td.ok { color: #1a7f37; } td.bad { color: #cf222e; } td.id { font: 12px ui-monospace, monospace; color: #57606a; }
.topology-box { background: #fff; border: 1px solid #d0d7de; border-radius: 6px; overflow: auto; max-width: 100%; }
svg.topology .node rect { fill: #ddf4ff; stroke: #0969da; }
svg.topology .node-name { font-weight: 600; fill: #0b2e55; }
svg.topology .node-stat { font-size: 11px; fill: #57606a; }
svg.topology .edge path { fill: none; stroke-width: 2; }
svg.topology .edge.secured path { stroke: #2e7d32; }
svg.topology .edge.plain path { stroke: #c62828; stroke-dasharray: 6 4; }
svg.topology .edge text { font-size: 11px; fill: #24292f; paint-order: stroke; stroke: #fff; stroke-width: 3px; }
.tap-status { margin: 6px 0; font-size: 12px; } .tap-status.ok { color: #57606a; } .tap-status.bad { color: #cf222e; }
table.tap-events td { font: 12px ui-monospace, monospace; }
h4 { margin: 12px 0 4px; }
.service-routes { margin-bottom: 12px; }
.route { background: #fff; border: 1px solid #d0d7de; border-radius: 6px; padding: 6px 10px; margin: 8px 0; }
.route-head { margin: 2px 0 4px; } .route-live { color: #57606a; }
.parent-status { display: flex; gap: 10px; flex-wrap: wrap; font-size: 12px; margin: 2px 0 6px; }
.condition { padding: 0 6px; border-radius: 4px; } .condition.ok { background: #dafbe1; color: #1a7f37; } .condition.bad { background: #ffebe9; color: #cf222e; }
table.route-rules td, table.traces td, table.trace-spans td { font: 12px ui-monospace, monospace; }
table.traces tr.current { background: #ddf4ff; }
.trace { margin-top: 10px; } .trace .close { font-size: 12px; margin-left: 8px; }
.hint { color: #57606a; font-size: 12px; max-width: 900px; } p.bad { color: #cf222e; }
td.span-name { white-space: pre; }
svg.span-bar rect.ok { fill: #54aeff; } svg.span-bar rect.bad { fill: #ff8182; }
`;
