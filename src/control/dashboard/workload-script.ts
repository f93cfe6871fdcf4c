// The workload page's routes and recent traces, a part of the dashboard's script (app-script.ts
// splices it into its closure, so it uses el, svg, cliBox, shellQuote, nsArg, href, pct, num and
// ms from there). Plain browser JavaScript kept as a string; every name from the mesh is inserted
// as text. Keep it free of backticks and dollar-brace: it lives in a template literal.
//
//   routes   GET /api/workload-routes?namespace=NS&workload=NAME: the Services the workload backs,
//            each with the routes `trellis routes SVC -n NS` shows (status per parent, rules,
//            backends with weights and shares), and per Service GET /api/route-stats for the live
//            numbers per route and backend; and the Services it calls (outbound: named by a
//            consumer route of its namespace, or seen in its edges), each with the routes that
//            apply to its calls
//   traces   GET /api/traces?service=NAME&namespace=NS&limit=TRACE_ROWS: the recent traces with a
//            span of the workload, newest first; #/workload/NS/NAME/trace/ID opens one
//            (GET /api/traces/ID) as a waterfall of its spans, each under its parent
// Both are read on each refresh of the workload page (workloadData.load) and drawn from what was
// read last. A refusal (401: the control plane wants the operator token, which `trellis dashboard`
// adds) and a control plane without the trace store (404) are said as such.
export const WORKLOAD_SCRIPT = String.raw`
  var TRACE_ROWS = 20;
  var workloadData = {
    key: null, routes: null, routesWhy: null, routeStats: {}, traces: null, tracesWhy: null,
    traceId: null, trace: null, traceWhy: null,
    reset: function (k) {
      if (this.key === k) return;
      this.key = k; this.routes = null; this.routesWhy = null; this.routeStats = {};
      this.traces = null; this.tracesWhy = null; this.traceId = null; this.trace = null; this.traceWhy = null;
    },
  };

  // A read that never fails: {ok, status, body} with body the JSON answer or null.
  function readApi(path) {
    return fetch(path, { cache: 'no-store' }).then(function (res) {
      return res.json().then(function (body) { return { ok: res.ok, status: res.status, body: body }; },
        function () { return { ok: res.ok, status: res.status, body: null }; });
    }, function (err) { return { ok: false, status: 0, body: { error: String(err && err.message ? err.message : err) } }; });
  }
  function whyNot(r, what) {
    if (r.status === 401) return 'the control plane shows ' + what + ' to operators only: open this page through trellis dashboard (its relay adds the operator token)' + (r.body && r.body.error ? ' (' + r.body.error + ')' : '');
    return 'cannot read ' + what + ': ' + (r.body && r.body.error ? r.body.error : 'HTTP ' + r.status);
  }

  function loadWorkloadData(ns, name, traceId) {
    var k = key(ns, name), d = workloadData;
    d.reset(k);
    var q = 'namespace=' + encodeURIComponent(ns);
    var routes = readApi('/api/workload-routes?' + q + '&workload=' + encodeURIComponent(name)).then(function (r) {
      if (d.key !== k) return;
      if (!r.ok || r.body === null || !Array.isArray(r.body.services)) { d.routesWhy = whyNot(r, 'the routes'); return; }
      d.routes = r.body; d.routesWhy = null;
      return Promise.all(r.body.services.map(function (s) {
        return readApi('/api/route-stats?' + q + '&service=' + encodeURIComponent(s.service)).then(function (st) {
          if (d.key === k) d.routeStats[s.service] = st.ok && st.body !== null ? st.body : null;
        });
      }));
    });
    var traces = readApi('/api/traces?service=' + encodeURIComponent(name) + '&' + q + '&limit=' + TRACE_ROWS).then(function (r) {
      if (d.key !== k) return;
      if (r.ok && Array.isArray(r.body)) { d.traces = r.body; d.tracesWhy = null; }
      else if (r.status === 404) { d.traces = null; d.tracesWhy = 'absent'; }
      else { d.traces = null; d.tracesWhy = whyNot(r, 'traces'); }
    });
    var trace = Promise.resolve();
    if (traceId === undefined) { d.traceId = null; d.trace = null; d.traceWhy = null; }
    else trace = readApi('/api/traces/' + encodeURIComponent(traceId)).then(function (r) {
      if (d.key !== k) return;
      d.traceId = traceId;
      if (r.ok && r.body !== null && Array.isArray(r.body.spans)) { d.trace = r.body.spans; d.traceWhy = null; }
      else { d.trace = null; d.traceWhy = r.status === 404 ? 'trace ' + traceId + ' is not kept (any more): the control plane keeps the most recent traces only' : whyNot(r, 'the trace'); }
    });
    return Promise.all([routes, traces, trace]);
  }

  // ---- Routes -------------------------------------------------------------------------------
  function statFor(list, match) { return (list || []).find(match) || null; }
  function conditionLine(c) {
    var good = c.type === 'PartiallyInvalid' ? c.status !== 'True' : c.status === 'True';
    return el('span', { class: 'condition ' + (good ? 'ok' : 'bad'), 'data-condition': c.type + '=' + c.status, title: c.message },
      c.type + ' ' + c.status + (c.reason && c.reason !== c.type ? ' (' + c.reason + ')' : ''));
  }
  function routeBlock(r, stats) {
    var id = r.kind + '/' + r.namespace + '/' + r.name;
    var live = statFor(stats && stats.routes, function (s) { return s.route_kind === r.kind && s.route_namespace === r.namespace && s.route_name === r.name; });
    var parents = r.parents.map(function (p) {
      var items = [el('span', { class: 'parent' }, 'parent ' + p.parentRef.name + (p.parentRef.port === undefined ? '' : ':' + p.parentRef.port))];
      p.conditions.forEach(function (c) { items.push(conditionLine(c)); });
      return el('div', { class: 'parent-status' }, items);
    });
    var head = el('tr', null, ['RULE', 'MATCHES', 'FILTERS', 'BACKEND', 'WEIGHT', 'SHARE', 'SUCCESS', 'RPS', 'P99'].map(function (h) { return el('th', null, h); }));
    var rows = [];
    r.rules.forEach(function (rule) {
      var backends = rule.backends.length > 0 ? rule.backends : [null];
      backends.forEach(function (b, i) {
        var bl = b === null ? null : statFor(stats && stats.backends, function (s) {
          return s.route_kind === r.kind && s.route_namespace === r.namespace && s.route_name === r.name &&
            s.backend_namespace === b.namespace && s.backend_name === b.name && (b.port === null || s.backend_port === b.port);
        });
        rows.push(el('tr', b === null ? null : { 'data-backend': b.namespace + '/' + b.name }, [
          el('td', null, i === 0 ? String(rule.index) + (rule.name === null ? '' : ' (' + rule.name + ')') : ''),
          el('td', null, i === 0 ? rule.matches.join(' | ') : ''),
          el('td', null, i === 0 ? rule.filters.join(', ') || '-' : ''),
          el('td', { class: b !== null && !b.resolved ? 'bad' : '' }, b === null ? (rule.filters.indexOf('RequestRedirect') >= 0 ? 'redirect' : 'no backends (500)') :
            b.namespace + '/' + b.name + ':' + (b.port === null ? '-' : b.port) + (b.resolved ? '' : ' missing (500)')),
          el('td', null, b === null ? '-' : String(b.weight)),
          el('td', null, b === null ? '-' : b.share + '%'),
          el('td', null, bl ? pct(bl.success) : '-'),
          el('td', null, bl ? num(bl.rps, 1) : '-'),
          el('td', null, bl ? ms(bl.latency_p99_ms) : '-'),
        ]));
      });
    });
    return el('div', { class: 'route', 'data-route': id }, [
      el('p', { class: 'route-head' }, [
        el('strong', null, r.kind + ' ' + r.namespace + '/' + r.name), ' \u00B7 ' + r.role,
        el('span', { class: 'route-live', 'data-route-live': live ? String(live.requests) : '' }, live ? ' \u00B7 success ' + pct(live.success) + ' \u00B7 ' + num(live.rps, 1) + ' rps \u00B7 p50 ' + ms(live.latency_p50_ms) + ' \u00B7 p99 ' + ms(live.latency_p99_ms) + ' (last 10 s)' :
          stats ? ' \u00B7 no requests in the last 10 s' : ''),
      ]),
      el('div', { class: 'parents' }, parents),
      el('table', { class: 'route-rules' }, [el('thead', null, head), el('tbody', null, rows)]),
    ]);
  }
  function routesView(ns, name) {
    var d = workloadData;
    if (d.routesWhy !== null) return el('p', { class: 'bad', id: 'routes' }, d.routesWhy);
    if (d.routes === null) return el('p', { id: 'routes' }, 'reading the routes');
    if (d.routes.services.length === 0)
      return el('div', { id: 'routes' }, [cliBox(['trellis routes' + nsArg(ns) + ' ' + shellQuote(name)]),
        el('p', null, name + ' backs no Service in ' + ns + ': no route can send requests to it.')]);
    return el('div', { id: 'routes' }, d.routes.services.map(function (s) {
      var stats = d.routeStats[s.service] || null;
      var blocks = s.routes.map(function (r) { return routeBlock(r, stats); });
      if (blocks.length === 0) blocks.push(el('p', null, 'No HTTPRoute or GRPCRoute attached: requests to ' + s.service + ' go to its endpoints as they are.'));
      return el('div', { class: 'service-routes', 'data-service': s.namespace + '/' + s.service }, [
        el('h4', null, 'Service ' + s.service + (s.ports.length === 0 ? '' : ' (ports ' + s.ports.join(', ') + ')')),
        cliBox(['trellis routes' + nsArg(ns) + ' ' + shellQuote(s.service)]),
      ].concat(blocks));
    }));
  }

  // The Services the workload calls, each with the routes its calls go by (consumer routes of its
  // namespace first, else the Service's producer routes), and how the control plane knows.
  function outboundRoutesView(ns, name) {
    var d = workloadData;
    if (d.routesWhy !== null || d.routes === null) return el('div', { id: 'outbound-routes' }, []);
    var list = Array.isArray(d.routes.outbound) ? d.routes.outbound : [];
    if (list.length === 0)
      return el('div', { id: 'outbound-routes' }, [el('p', { 'data-outbound': 'none' }, 'No Service is known to be called by ' + name +
        ': no consumer route of ' + ns + ' names one, and its proxies have not been seen calling a workload that backs one.')]);
    return el('div', { id: 'outbound-routes', 'data-outbound': String(list.length) }, list.map(function (s) {
      var known = s.known_by.map(function (k) { return k === 'calls' ? 'seen calling it' : 'a consumer route of ' + ns + ' names it'; }).join('; ');
      var blocks = s.routes.map(function (r) { return routeBlock(r, null); });
      if (blocks.length === 0) blocks.push(el('p', null, 'No route applies: calls to ' + s.service + ' go to its endpoints as they are.'));
      return el('div', { class: 'service-routes', 'data-outbound-service': s.namespace + '/' + s.service }, [
        el('h4', null, 'Service ' + s.namespace + '/' + s.service + ' (' + known + ')'),
        cliBox(['trellis routes' + nsArg(s.namespace) + ' ' + shellQuote(s.service)]),
      ].concat(blocks));
    }));
  }

  // ---- Traces -------------------------------------------------------------------------------
  function duration(v) { return typeof v !== 'number' ? '-' : v < 10 ? v.toFixed(2) + 'ms' : Math.round(v) + 'ms'; }
  function age(fromMs) {
    var s = Math.max(0, Math.round((Date.now() - fromMs) / 1000));
    return s < 120 ? s + 's ago' : s < 7200 ? Math.round(s / 60) + 'm ago' : Math.round(s / 3600) + 'h ago';
  }
  function tracingHint() {
    return el('p', { class: 'hint' }, 'Traces come from proxies that export spans to this control plane. On one machine trellis up makes the proxies of trellis run export here ' +
      '(trellis up --trace-sample-ratio R sets the share of requests traced; 1, every request, unless changed; with --trace-collector URL they go to that collector instead). ' +
      'On Kubernetes tracing is off unless installed with trellis install --trace-collector URL, and the spans go to that collector, not here.');
  }
  function tracesView(ns, name, wanted) {
    var d = workloadData, base = 'trellis trace --service ' + shellQuote(name) + nsArg(ns);
    var items = [cliBox([base, 'trellis trace TRACE_ID'])];
    if (d.tracesWhy === 'absent') items.push(el('p', { class: 'bad', 'data-traces': 'absent' }, 'This control plane keeps no traces.'), tracingHint());
    else if (d.tracesWhy !== null) items.push(el('p', { class: 'bad', 'data-traces': 'refused' }, d.tracesWhy));
    else if (d.traces === null) items.push(el('p', null, 'reading the traces'));
    else if (d.traces.length === 0) items.push(el('p', { 'data-traces': 'none' }, 'No trace with a span of ' + name + ' is kept.'), tracingHint());
    else {
      var head = el('tr', null, ['TRACE', 'ROOT', 'DURATION', 'SPANS', 'SERVICES', 'STATUS', 'WHEN'].map(function (h) { return el('th', null, h); }));
      var rows = d.traces.map(function (t) {
        return el('tr', { 'data-trace-id': t.trace_id, class: t.trace_id === d.traceId ? 'current' : '' }, [
          el('td', { class: 'id' }, el('a', { href: href('workload', ns, name) + '/trace/' + encodeURIComponent(t.trace_id) }, t.trace_id)),
          el('td', null, (t.root_service || '?') + ' ' + (t.root_name || '-')),
          el('td', null, duration(t.duration_ms)),
          el('td', null, String(t.spans)),
          el('td', null, t.services.join(', ')),
          el('td', { class: t.error ? 'bad' : 'ok' }, t.error ? 'error' : 'ok'),
          el('td', null, age(t.start_ms)),
        ]);
      });
      items.push(el('table', { class: 'traces', 'data-traces': String(d.traces.length) }, [el('thead', null, head), el('tbody', null, rows)]));
    }
    if (wanted !== undefined) items.push(traceView(ns, name, wanted));
    return el('div', { id: 'traces' }, items);
  }
  // The spans of one trace in tree order (each under its parent, siblings by start), with depth.
  function spanTree(spans) {
    var ids = {}, children = {}, roots = [], out = [], seen = {};
    spans.forEach(function (s) { ids[s.spanId] = true; });
    spans.forEach(function (s) {
      if (s.parentSpanId !== '' && ids[s.parentSpanId] && s.parentSpanId !== s.spanId) (children[s.parentSpanId] = children[s.parentSpanId] || []).push(s);
      else roots.push(s);
    });
    function byStart(a, b) { return a.startMs - b.startMs; }
    function walk(s, depth) {
      if (seen[s.spanId]) return;
      seen[s.spanId] = true;
      out.push({ span: s, depth: depth });
      (children[s.spanId] || []).sort(byStart).forEach(function (c) { walk(c, depth + 1); });
    }
    roots.sort(byStart).forEach(function (r) { walk(r, 0); });
    return out;
  }
  function traceView(ns, name, wanted) {
    var d = workloadData, close = el('a', { href: href('workload', ns, name), class: 'close' }, 'close');
    if (d.traceId !== wanted || d.trace === null)
      return el('div', { class: 'trace', id: 'trace' }, [el('p', { class: d.traceId === wanted && d.traceWhy ? 'bad' : '' },
        d.traceId === wanted && d.traceWhy ? d.traceWhy : 'reading the trace'), ' ', close]);
    var spans = d.trace, start = Infinity, end = -Infinity;
    spans.forEach(function (s) { start = Math.min(start, s.startMs); end = Math.max(end, s.endMs); });
    var total = Math.max(end - start, 0.001), W = 320;
    var head = el('tr', null, ['SPAN', 'SERVICE', 'KIND', 'STATUS', 'ROUTE', 'DURATION', 'TIMELINE'].map(function (h) { return el('th', null, h); }));
    var rows = spanTree(spans).map(function (n) {
      var s = n.span, a = s.attributes || {};
      var what = [a['http.request.method'], a['url.path']].filter(function (x) { return x !== undefined; }).join(' ') || s.name;
      var status = [a['http.response.status_code'], a['rpc.grpc.status_code'] === undefined ? undefined : 'grpc ' + a['rpc.grpc.status_code']]
        .filter(function (x) { return x !== undefined; }).join(' ');
      var x = ((s.startMs - start) / total) * W, w = Math.max(((s.endMs - s.startMs) / total) * W, 1);
      var bar = svg('svg', { class: 'span-bar', width: W, height: 12, viewBox: '0 0 ' + W + ' 12' }, [
        svg('rect', { x: Math.min(x, W - 1), y: 2, width: Math.min(w, W - Math.min(x, W - 1)), height: 8, class: s.error ? 'bad' : 'ok' }),
        svg('title', null, '+' + duration(s.startMs - start) + ', ' + duration(s.endMs - s.startMs)),
      ]);
      return el('tr', { 'data-span-id': s.spanId, class: 'depth-' + Math.min(n.depth, 9) }, [
        el('td', { class: 'span-name' }, '\u2003'.repeat(Math.min(n.depth, 12)) + (n.depth > 0 ? '\u2514 ' : '') + what),
        el('td', null, s.service || '?'),
        el('td', null, String(s.kind).toUpperCase()),
        el('td', { class: s.error ? 'bad' : 'ok' }, (status || '-') + (s.error ? ' ERROR' + (s.statusMessage ? ' ' + s.statusMessage : '') : '') +
          (a['trellis.proxy_error'] ? ' (' + a['trellis.proxy_error'] + ')' : '')),
        el('td', null, a['trellis.route'] === undefined ? '-' : String(a['trellis.route'])),
        el('td', null, duration(s.endMs - s.startMs)),
        el('td', null, bar),
      ]);
    });
    return el('div', { class: 'trace', id: 'trace', 'data-trace-id': d.traceId }, [
      el('h4', null, ['trace ', el('code', null, d.traceId), ' \u00B7 ' + spans.length + ' spans \u00B7 ' + duration(end - start) + ' ', close]),
      cliBox(['trellis trace ' + d.traceId]),
      el('table', { class: 'trace-spans' }, [el('thead', null, head), el('tbody', null, rows)]),
    ]);
  }
`;
