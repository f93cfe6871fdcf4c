// The dashboard's script, served as /dashboard/app.js by src/control/dashboard/routes.ts: plain
// browser JavaScript (no framework, nothing fetched from elsewhere) kept as a string, so that the
// compiled dist/ ships it with the rest. It polls the control plane's read APIs (GET /api/stat,
// /api/edges, /api/workloads) every 2 s and draws, by the location's hash:
//   #/                       every namespace: workloads with golden metrics, topology, edges
//   #/ns/NS                  the same for one namespace
//   #/workload/NS/NAME       one workload: its metrics, its callers and callees, the routes of
//                            the Services it backs, a live tap of its proxies (GET /api/tap, read
//                            as a stream of JSON lines) and its recent traces (workload-script.ts)
//   #/workload/NS/NAME/trace/ID  the same with one of those traces open
// Each view shows the equivalent CLI command. Every name from the mesh is inserted as text
// (createTextNode / setAttribute), never as markup; the page's Content-Security-Policy allows no
// inline script either. test/unit/edges.test.ts checks that it parses; test/long/dashboard.test.ts
// runs it in Chromium. Keep it free of backticks and dollar-brace: it lives in a template literal.
import { WORKLOAD_SCRIPT } from './workload-script.ts';

export const DASHBOARD_SCRIPT = String.raw`
'use strict';
(function () {
  var REFRESH_MS = 2000;
  var SVG_NS = 'http://www.w3.org/2000/svg';
  var state = { stats: [], edges: [], workloads: [], updated: 0, error: null };

  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    setAttrs(node, attrs);
    append(node, children);
    return node;
  }
  function svg(tag, attrs, children) {
    var node = document.createElementNS(SVG_NS, tag);
    setAttrs(node, attrs);
    append(node, children);
    return node;
  }
  function setAttrs(node, attrs) {
    if (!attrs) return;
    Object.keys(attrs).forEach(function (k) {
      if (attrs[k] !== null && attrs[k] !== undefined) node.setAttribute(k, String(attrs[k]));
    });
  }
  // Text only: every name from the mesh goes in as a text node, never as markup.
  function append(node, children) {
    if (children === undefined || children === null) return;
    (Array.isArray(children) ? children : [children]).forEach(function (c) {
      if (c === null || c === undefined) return;
      node.appendChild(typeof c === 'string' || typeof c === 'number' ? document.createTextNode(String(c)) : c);
    });
  }

  function pct(v) { return v === null || v === undefined ? '-' : (v * 100).toFixed(2) + '%'; }
  function num(v, digits) { return v === null || v === undefined ? '-' : v.toFixed(digits); }
  function ms(v) { return v === null || v === undefined ? '-' : v + 'ms'; }
  function key(ns, name) { return ns + '/' + name; }
  function shellQuote(s) { return /^[A-Za-z0-9._\/=:-]+$/.test(s) ? s : "'" + s.replace(/'/g, "'\\''") + "'"; }

  function route() {
    var parts = location.hash.replace(/^#\/?/, '').split('/').map(function (p) {
      try { return decodeURIComponent(p); } catch (e) { return p; }
    });
    if (parts[0] === 'workload' && parts.length >= 3)
      return { view: 'workload', namespace: parts[1], name: parts[2], trace: parts[3] === 'trace' && parts[4] ? parts[4] : undefined };
    if (parts[0] === 'ns' && parts.length >= 2 && parts[1] !== '') return { view: 'namespace', namespace: parts[1] };
    return { view: 'all' };
  }
  function href(view, ns, name) {
    if (view === 'workload') return '#/workload/' + encodeURIComponent(ns) + '/' + encodeURIComponent(name);
    if (view === 'namespace') return '#/ns/' + encodeURIComponent(ns);
    return '#/';
  }

  function getJson(path) {
    return fetch(path, { cache: 'no-store' }).then(function (res) {
      if (!res.ok) throw new Error(path + ': HTTP ' + res.status);
      return res.json();
    });
  }
  // The workload page's routes and traces: read with the rest on each refresh (never failing).
  function workloadExtras() {
    var r = route();
    return r.view === 'workload' ? loadWorkloadData(r.namespace, r.name, r.trace) : Promise.resolve();
  }
  function refresh() {
    Promise.all([getJson('/api/stat'), getJson('/api/edges'), getJson('/api/workloads'), workloadExtras()]).then(
      function (r) {
        state.stats = r[0]; state.edges = r[1]; state.workloads = r[2];
        state.updated++; state.error = null;
        render();
      },
      function (err) { state.error = String(err && err.message ? err.message : err); render(); }
    ).finally(function () { setTimeout(refresh, REFRESH_MS); });
  }

  function namespaces() {
    var set = {};
    state.stats.forEach(function (s) { set[s.namespace] = true; });
    state.edges.forEach(function (e) { if (e.src_namespace) set[e.src_namespace] = true; if (e.dst_namespace) set[e.dst_namespace] = true; });
    return Object.keys(set).sort();
  }
  function requestsOf(ns, name) {
    var w = state.workloads.find(function (x) { return x.namespace === ns && x.name === name; });
    return w ? w.requests_total : 0;
  }
  function statOf(ns, name) {
    return state.stats.find(function (s) { return s.namespace === ns && s.name === name; }) || null;
  }

  function cliBox(commands) {
    var items = [el('span', { class: 'cli-label' }, 'The same in the CLI:')];
    commands.forEach(function (c) { items.push(el('code', null, c)); });
    return el('div', { class: 'cli', 'data-cli': commands.join('\n') }, items);
  }

  function workloadTable(stats) {
    var head = el('tr', null, ['NAMESPACE', 'NAME', 'MESHED', 'SUCCESS', 'RPS', 'P50', 'P95', 'P99', 'TCP', 'REQUESTS'].map(function (h) { return el('th', null, h); }));
    var rows = stats.map(function (s) {
      return el('tr', { 'data-workload': key(s.namespace, s.name) }, [
        el('td', null, el('a', { href: href('namespace', s.namespace) }, s.namespace)),
        el('td', null, el('a', { href: href('workload', s.namespace, s.name) }, s.name)),
        el('td', null, s.meshed),
        el('td', { class: s.success !== null && s.success < 0.95 ? 'bad' : '' }, pct(s.success)),
        el('td', null, num(s.rps, 1)),
        el('td', null, ms(s.latency_p50_ms)),
        el('td', null, ms(s.latency_p95_ms)),
        el('td', null, ms(s.latency_p99_ms)),
        el('td', null, s.tcp_conn === null ? '-' : s.tcp_conn),
        el('td', { 'data-requests': '' }, requestsOf(s.namespace, s.name)),
      ]);
    });
    if (rows.length === 0) rows.push(el('tr', null, el('td', { colspan: 10 }, 'No workloads registered.')));
    return el('table', { class: 'workloads' }, [el('thead', null, head), el('tbody', null, rows)]);
  }

  function edgeTable(edges) {
    var head = el('tr', null, ['SRC', 'DST', 'SRC_NS', 'DST_NS', 'SECURED', 'CLIENT_ID', 'SERVER_ID'].map(function (h) { return el('th', null, h); }));
    var rows = edges.map(function (e) {
      return el('tr', { 'data-edge-row': key(e.src_namespace, e.src) + '>' + key(e.dst_namespace, e.dst) }, [
        el('td', null, el('a', { href: href('workload', e.src_namespace, e.src) }, e.src)),
        el('td', null, el('a', { href: href('workload', e.dst_namespace, e.dst) }, e.dst)),
        el('td', null, e.src_namespace || '-'),
        el('td', null, e.dst_namespace || '-'),
        el('td', { class: e.secured ? 'ok' : 'bad' }, e.secured ? 'mTLS' : 'no (' + (e.no_tls_reason || 'unknown') + ')'),
        el('td', { class: 'id' }, e.client_identity || '-'),
        el('td', { class: 'id' }, e.server_identity || '-'),
      ]);
    });
    if (rows.length === 0) rows.push(el('tr', null, el('td', { colspan: 7 }, 'No edges seen yet.')));
    return el('table', { class: 'edges' }, [el('thead', null, head), el('tbody', null, rows)]);
  }

  // The topology: workloads in columns by how far they are from a caller nobody calls, an arrow
  // per edge labelled with the destination's success rate and p50 latency.
  function topology(stats, edges) {
    var nodes = {};
    function addNode(ns, name) {
      var k = key(ns, name);
      if (!nodes[k]) nodes[k] = { ns: ns, name: name, depth: 0, row: 0 };
    }
    stats.forEach(function (s) { addNode(s.namespace, s.name); });
    edges.forEach(function (e) { addNode(e.src_namespace, e.src); addNode(e.dst_namespace, e.dst); });
    var keys = Object.keys(nodes).sort();
    for (var round = 0; round < keys.length; round++) {
      var changed = false;
      edges.forEach(function (e) {
        var s = nodes[key(e.src_namespace, e.src)], d = nodes[key(e.dst_namespace, e.dst)];
        if (s !== d && d.depth < s.depth + 1 && s.depth + 1 < keys.length) { d.depth = s.depth + 1; changed = true; }
      });
      if (!changed) break;
    }
    var columns = [];
    keys.forEach(function (k) {
      var n = nodes[k];
      columns[n.depth] = columns[n.depth] || [];
      n.row = columns[n.depth].length;
      columns[n.depth].push(n);
    });
    var W = 160, H = 44, GX = 210, GY = 50, PAD = 30;
    var maxRows = columns.reduce(function (m, c) { return Math.max(m, c ? c.length : 0); }, 1);
    var width = PAD * 2 + Math.max(1, columns.length) * (W + GX) - GX;
    var height = PAD * 2 + maxRows * (H + GY) - GY;
    function pos(n) { return { x: PAD + n.depth * (W + GX), y: PAD + n.row * (H + GY) }; }
    var root = svg('svg', { class: 'topology', width: width, height: height, viewBox: '0 0 ' + width + ' ' + height, role: 'img', 'aria-label': 'topology' });
    root.appendChild(svg('defs', null, [
      svg('marker', { id: 'arrow-ok', viewBox: '0 0 10 10', refX: 10, refY: 5, markerWidth: 8, markerHeight: 8, orient: 'auto-start-reverse' }, svg('path', { d: 'M0,0 L10,5 L0,10 z', fill: '#2e7d32' })),
      svg('marker', { id: 'arrow-bad', viewBox: '0 0 10 10', refX: 10, refY: 5, markerWidth: 8, markerHeight: 8, orient: 'auto-start-reverse' }, svg('path', { d: 'M0,0 L10,5 L0,10 z', fill: '#c62828' })),
    ]));
    edges.forEach(function (e) {
      var s = nodes[key(e.src_namespace, e.src)], d = nodes[key(e.dst_namespace, e.dst)];
      var a = pos(s), b = pos(d);
      var x1 = a.x + W, y1 = a.y + H / 2, x2 = b.x, y2 = b.y + H / 2, path;
      if (s === d) {
        path = 'M' + (a.x + W - 30) + ',' + a.y + ' C' + (a.x + W - 30) + ',' + (a.y - 30) + ' ' + (a.x + W + 20) + ',' + (a.y - 10) + ' ' + (a.x + W) + ',' + (a.y + 10);
      } else if (x2 <= x1) {
        x1 = a.x + W / 2; y1 = a.y + H; x2 = b.x + W / 2; y2 = b.y + H;
        path = 'M' + x1 + ',' + y1 + ' C' + x1 + ',' + (y1 + 40) + ' ' + x2 + ',' + (y2 + 40) + ' ' + x2 + ',' + y2;
      } else {
        path = 'M' + x1 + ',' + y1 + ' C' + (x1 + GX / 2) + ',' + y1 + ' ' + (x2 - GX / 2) + ',' + y2 + ' ' + x2 + ',' + y2;
      }
      var st = statOf(e.dst_namespace, e.dst);
      var label = (e.secured ? '' : 'plain \u00B7 ') + pct(st && st.success) + ' \u00B7 p50 ' + ms(st && st.latency_p50_ms);
      var g = svg('g', { class: 'edge ' + (e.secured ? 'secured' : 'plain'), 'data-edge': key(e.src_namespace, e.src) + '>' + key(e.dst_namespace, e.dst), 'data-secured': e.secured ? 'true' : 'false' }, [
        svg('path', { d: path, 'marker-end': e.secured ? 'url(#arrow-ok)' : 'url(#arrow-bad)' }),
        svg('text', { x: (x1 + x2) / 2, y: (y1 + y2) / 2 - 6, 'text-anchor': 'middle' }, label),
        svg('title', null, e.src + ' \u2192 ' + e.dst + (e.secured ? ' (mTLS: ' + (e.client_identity || '?') + ' \u2192 ' + (e.server_identity || '?') + ')' : ' (not mTLS: ' + (e.no_tls_reason || 'unknown') + ')')),
      ]);
      root.appendChild(g);
    });
    keys.forEach(function (k) {
      var n = nodes[k], p = pos(n), st = statOf(n.ns, n.name);
      var link = svg('a', { href: href('workload', n.ns, n.name), class: 'node', 'data-node': k }, [
        svg('rect', { x: p.x, y: p.y, width: W, height: H, rx: 6 }),
        svg('text', { x: p.x + W / 2, y: p.y + 18, 'text-anchor': 'middle', class: 'node-name' }, n.name),
        svg('text', { x: p.x + W / 2, y: p.y + 35, 'text-anchor': 'middle', class: 'node-stat' }, (n.ns || '?') + ' \u00B7 ' + num(st && st.rps, 1) + ' rps'),
      ]);
      root.appendChild(link);
    });
    var legend = el('p', { class: 'legend' }, 'Arrows go from caller to callee: solid green when mutual TLS secures the connections, dashed red when not. ' +
      'The label is the callee\u2019s success rate and p50 latency over the last 10 s, from all its callers.');
    return el('div', { class: 'topology-box' }, [root, legend]);
  }

  function nsArg(ns) { return ns === undefined ? '' : ' -n ' + shellQuote(ns); }

  // The live tap of the workload page: one stream per page (kept across the re-renders of the
  // 2 s refresh, stopped when the page changes), its newest TAP_ROWS requests on top. At most
  // TAP_RPS events a second per proxy; a line longer than TAP_MAX_LINE is skipped.
  var TAP_ROWS = 50, TAP_RPS = 20, TAP_MAX_LINE = 65536;
  var tap = { key: null, controller: null, box: null, body: null, status: null, count: 0 };
  function stopTap() {
    if (tap.controller !== null) tap.controller.abort();
    tap.key = null; tap.controller = null; tap.box = null;
  }
  function tapStatus(text, bad) { tap.status.textContent = text; tap.status.className = 'tap-status ' + (bad ? 'bad' : 'ok'); }
  function tapRow(e) {
    var who = e.direction === 'inbound' ? (e.source_identity || e.source || '-') : (e.workload || '-');
    var to = e.direction === 'inbound' ? (e.workload || '-') : (e.destination_identity || e.authority || e.destination || '-');
    var failed = e.status === 0 || e.status >= 500 || (e.grpc_status !== null && e.grpc_status !== undefined && e.grpc_status !== '0') || e.proxy_error;
    return el('tr', { 'data-tap-path': e.path }, [
      el('td', null, e.direction === 'inbound' ? 'in' : 'out'),
      el('td', { class: 'id' }, who),
      el('td', { class: 'id' }, to),
      el('td', null, e.tls ? 'mTLS' : 'plain'),
      el('td', null, e.method),
      el('td', null, e.path),
      el('td', e.route ? { class: 'route', title: (e.route_kind || 'route') + ' ' + e.route + ', rule ' + (e.route_rule || '?') } : null, e.route || '-'),
      el('td', { class: failed ? 'bad' : 'ok' }, String(e.status) + (e.proxy_error ? ' (' + e.proxy_error + ')' : '')),
      el('td', null, typeof e.latency_ms === 'number' ? e.latency_ms.toFixed(2) + 'ms' : '-'),
    ]);
  }
  function onTapLine(line) {
    var e;
    try { e = JSON.parse(line); } catch (err) { return; }
    if (e === null || typeof e !== 'object') return;
    if (e.type === 'exchange' && typeof e.path === 'string') {
      tap.count++;
      tap.body.insertBefore(tapRow(e), tap.body.firstChild);
      while (tap.body.childNodes.length > TAP_ROWS) tap.body.removeChild(tap.body.lastChild);
      tap.box.setAttribute('data-tap-events', String(tap.count));
      tapStatus('live \u00B7 ' + tap.count + ' requests seen', false);
    } else if (e.type === 'error') {
      tapStatus('cannot tap ' + (e.namespace || '?') + '/' + (e.instance || '?') + ': ' + e.error, true);
    } else if (e.type === 'started' && tap.count === 0) {
      tapStatus('tapping: waiting for requests', false);
    }
  }
  function startTap(ns, name) {
    stopTap();
    var controller = new AbortController();
    tap.key = key(ns, name); tap.controller = controller; tap.count = 0;
    tap.body = el('tbody', null);
    tap.status = el('p', { class: 'tap-status' }, 'starting the tap');
    var head = el('tr', null, ['DIR', 'FROM', 'TO', 'TLS', 'METHOD', 'PATH', 'ROUTE', 'STATUS', 'LATENCY'].map(function (h) { return el('th', null, h); }));
    tap.box = el('div', { class: 'tap', id: 'tap', 'data-tap-events': '0' }, [
      cliBox(['trellis tap' + nsArg(ns) + ' deploy/' + shellQuote(name)]),
      tap.status,
      el('table', { class: 'tap-events' }, [el('thead', null, head), tap.body]),
    ]);
    var query = '/api/tap?namespace=' + encodeURIComponent(ns) + '&workload=' + encodeURIComponent(name) + '&max_rps=' + TAP_RPS;
    fetch(query, { cache: 'no-store', signal: controller.signal }).then(function (res) {
      if (!res.ok) {
        return res.json().then(function (b) { tapStatus('cannot tap: ' + (b && b.error ? b.error : 'HTTP ' + res.status), true); },
          function () { tapStatus('cannot tap: HTTP ' + res.status, true); });
      }
      var reader = res.body.getReader(), decoder = new TextDecoder(), pending = '';
      function pump() {
        return reader.read().then(function (r) {
          if (r.done) { if (tap.controller === controller) tapStatus('the tap ended (reload the page to start it again)', true); return; }
          pending += decoder.decode(r.value, { stream: true });
          var nl;
          while ((nl = pending.indexOf('\n')) >= 0) { onTapLine(pending.slice(0, nl)); pending = pending.slice(nl + 1); }
          if (pending.length > TAP_MAX_LINE) pending = '';
          return pump();
        });
      }
      return pump();
    }).catch(function (err) {
      if (tap.controller === controller) tapStatus('the tap broke: ' + String(err && err.message ? err.message : err), true);
    });
  }
  function tapView(ns, name) {
    if (tap.key !== key(ns, name)) startTap(ns, name);
    return tap.box;
  }

  function render() {
    var r = route();
    var main = document.getElementById('main');
    var nav = document.getElementById('namespaces');
    nav.replaceChildren(el('a', { href: '#/', class: r.view === 'all' ? 'current' : '' }, 'all namespaces'));
    namespaces().forEach(function (ns) {
      nav.appendChild(el('a', { href: href('namespace', ns), class: r.namespace === ns && r.view === 'namespace' ? 'current' : '' }, ns));
    });
    var status = document.getElementById('status');
    status.textContent = state.error !== null ? 'cannot reach the control plane: ' + state.error : 'live \u00B7 update ' + state.updated;
    status.className = state.error !== null ? 'bad' : 'ok';
    status.setAttribute('data-updates', String(state.updated));

    var content = [];
    if (r.view === 'workload') {
      var ns = r.namespace, name = r.name, st = statOf(ns, name);
      workloadData.reset(key(ns, name));
      var inbound = state.edges.filter(function (e) { return e.dst_namespace === ns && e.dst === name; });
      var outbound = state.edges.filter(function (e) { return e.src_namespace === ns && e.src === name; });
      content.push(
        el('h2', null, ['workload ', el('span', { class: 'name', id: 'workload-name' }, name), ' in ', el('a', { href: href('namespace', ns) }, ns)]),
        cliBox(['trellis stat' + nsArg(ns) + ' deploy/' + shellQuote(name), 'trellis edges' + nsArg(ns)]),
        workloadTable(st ? [st] : []),
        el('h3', null, 'Topology'),
        topology(st ? [st] : [], inbound.concat(outbound.filter(function (e) { return inbound.indexOf(e) < 0; }))),
        el('h3', null, 'Inbound (who calls ' + name + ')'),
        edgeTable(inbound),
        el('h3', null, 'Outbound (whom ' + name + ' calls)'),
        edgeTable(outbound),
        el('h3', null, 'Routes to ' + name + ' (HTTPRoute, GRPCRoute)'),
        routesView(ns, name),
        el('h3', null, 'Routes of ' + name + "'s calls (HTTPRoute, GRPCRoute)"),
        outboundRoutesView(ns, name),
        el('h3', null, 'Live requests (tap)'),
        tapView(ns, name),
        el('h3', null, 'Recent traces through ' + name),
        tracesView(ns, name, r.trace)
      );
    } else {
      stopTap();
      var only = r.view === 'namespace' ? r.namespace : undefined;
      var stats = state.stats.filter(function (s) { return only === undefined || s.namespace === only; });
      var edges = state.edges.filter(function (e) { return only === undefined || e.src_namespace === only || e.dst_namespace === only; });
      content.push(
        el('h2', null, only === undefined ? 'All namespaces' : ['namespace ', el('span', { class: 'name' }, only)]),
        cliBox(['trellis stat' + nsArg(only), 'trellis edges' + nsArg(only)]),
        el('h3', null, 'Workloads'),
        workloadTable(stats),
        el('h3', null, 'Topology'),
        topology(stats, edges),
        el('h3', null, 'Edges'),
        edgeTable(edges)
      );
    }
    main.replaceChildren.apply(main, content);
  }

${WORKLOAD_SCRIPT}
  window.addEventListener('hashchange', function () { render(); workloadExtras().then(render); });
  render();
  refresh();
})();
`;
