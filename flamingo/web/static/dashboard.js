// Flamingo dashboard: polls /dashboard/data.json once a second and renders it;
// the forms call the ordinary REST API (same origin, so the browser's Origin
// header is the API's own). No framework, no build step; the chart is uPlot.
"use strict";

(function () {
  const POLL_MS = 1000;
  const $ = (sel, root) => (root || document).querySelector(sel);
  const hook = (id) => $(`[data-testid="${id}"]`);
  let doc = null;          // the last snapshot
  let plot = null;         // the uPlot instance
  let pollTimer = null;

  // The token is only needed once: the cookie now carries it. Keep it out of
  // the address bar, the history and bookmarks.
  if (new URLSearchParams(location.search).has("token")) {
    history.replaceState(null, "", location.pathname);
  }

  function text(el, value) {
    const s = value === null || value === undefined || value === "" ? "–" : String(value);
    if (el && el.textContent !== s) el.textContent = s;
  }
  const fixed = (x, n) => (typeof x === "number" ? x.toFixed(n) : null);
  const when = (t) => (t ? new Date(t * 1000).toLocaleString() : null);

  // --- API calls ------------------------------------------------------------------

  async function api(method, path, params) {
    const init = { method, credentials: "same-origin", cache: "no-store",
                   headers: { Accept: "application/json" } };
    if (params) init.body = new URLSearchParams(params);  // form-encoded
    const response = await fetch(path, init);
    let body = null;
    try { body = await response.json(); } catch (e) { body = null; }
    if (!response.ok) {
      const err = new Error(describeError(response.status, body));
      err.status = response.status;
      throw err;
    }
    return body;
  }

  function describeError(status, body) {
    if (!body || typeof body !== "object") return `HTTP ${status}`;
    let msg = body.error || `HTTP ${status}`;
    const d = body.detail;
    if (d && typeof d === "object") {
      if (d.message && !String(msg).includes(d.message)) msg += `: ${d.message}`;
      if (d.limit) msg += ` (limit: ${d.limit})`;
    } else if (typeof d === "string" && d) {
      msg += ` (${d})`;
    }
    return `${msg} [${status}]`;
  }

  // --- the poll --------------------------------------------------------------------

  async function poll() {
    clearTimeout(pollTimer);
    const live = $("#live");
    try {
      doc = await api("GET", "/dashboard/data.json");
      render(doc);
      // Only a change of connectivity is announced (a live region); the time is not.
      text(live, "Live");
      text($("#updated"), `· updated ${new Date().toLocaleTimeString()}`);
      live.classList.remove("stale");
    } catch (e) {
      text($("#updated"), "");
      live.textContent = e.status === 401
        ? "Not authorised: open /dashboard?token=<web.token> (see flamingo.yml)"
        : `Daemon not answering (${e.message}); retrying…`;
      live.classList.add("stale");
    }
    pollTimer = setTimeout(poll, POLL_MS);
  }

  function render(d) {
    const w = d.wader || {};
    const state = hook("wader-state");
    text(state, w.name);
    state.dataset.state = w.name || "";
    text(hook("wader-message"), w.message);
    text(hook("wader-cause"), w.cause);
    text(hook("stream-name"), d.stream && d.stream.name);
    text(hook("request-line"), w.request_line);
    text(hook("connected-since"), when(w.connected_since));
    text(hook("redis-available"), d.redis && d.redis.available ? "reachable" : "unreachable");

    const ev = d.events || {};
    text(hook("events-total"), ev.total);
    const rates = d.rates || {};
    for (const [key, label] of [["10s", "rate-10s"], ["1m", "rate-1m"], ["5m", "rate-5m"]]) {
      text(hook(label), fixed((rates[key] || {}).events_per_sec, 1));
    }
    renderByType(ev.by_type || {});
    const limit = d.limit || {};
    text(hook("limit-skipped"), limit.skipped === null || limit.skipped === undefined ? 0 : limit.skipped);
    text(hook("coverage"), fixed(limit.coverage, 1));
    text(hook("reconnects"), (d.connection || {}).reconnects);

    const j = d.journal || {}, s = d.sink || {};
    text(hook("journal-files"), j.segments);
    text(hook("journal-bytes"), j.bytes);
    text(hook("journal-last"), j.last_seq);
    text(hook("backlog"), d.backlog);
    text(hook("checkpoint"), s.checkpoint);
    text(hook("gap-events"), s.gap_events === undefined ? 0 : s.gap_events);
    text(hook("sink-error"), s.error || "none");
    text(hook("journal-error"), j.error || "none");

    renderParams(d.stream || {});
    renderSubscriptions(d.subscriptions || []);
    renderGroups(d.subscriptions || []);
    renderChart(d.history || []);
  }

  function renderByType(byType) {
    const body = $('[data-testid="by-type"] tbody');
    const rows = Object.entries(byType).sort((a, b) => b[1] - a[1]);
    body.replaceChildren(...rows.map(([type, n]) => {
      const tr = document.createElement("tr");
      const th = document.createElement("th");
      th.scope = "row";
      th.textContent = type;
      const td = document.createElement("td");
      td.className = "num";
      td.dataset.type = type;
      td.textContent = String(n);
      tr.append(th, td);
      return tr;
    }));
  }

  function renderParams(stream) {
    const list = hook("params");
    const params = stream.params || {};
    const keys = stream.keys || [];
    const items = [];
    for (const key of keys) {
      const dt = document.createElement("dt");
      dt.textContent = key;
      const dd = document.createElement("dd");
      dd.dataset.param = key;
      dd.textContent = (params[key] || []).join(", ") || "(none)";
      items.push(dt, dd);
    }
    if (!keys.length) {
      const dd = document.createElement("dd");
      dd.textContent = "This stream takes no parameters.";
      items.push(dd);
    }
    if (list.textContent !== items.map((e) => e.textContent).join("")) list.replaceChildren(...items);

    const select = $("#param-key");
    const have = Array.from(select.options).map((o) => o.value).join(",");
    if (have !== keys.join(",")) {
      const chosen = select.value;
      select.replaceChildren(...keys.map((k) => new Option(k, k, false, k === chosen)));
    }
    hook("param-form").hidden = !keys.length;
  }

  function renderSubscriptions(subs) {
    const body = $('[data-testid="subscriptions"] tbody');
    const seen = new Set();
    for (const sub of subs) {
      seen.add(sub.name);
      let tr = body.querySelector(`tr[data-subscription="${CSS.escape(sub.name)}"]`);
      if (!tr) {
        tr = subscriptionRow(sub.name);
        body.append(tr);
      }
      text($('[data-field="queue"]', tr), sub.queue);
      text($('[data-testid="queue-length"]', tr), sub.length === null ? 0 : sub.length);
      text($('[data-field="trimmed"]', tr), sub.trimmed);
      text($('[data-field="format"]', tr), sub.format);
      text($('[data-field="types"]', tr), (sub.types || ["all"]).join(", "));
    }
    for (const tr of Array.from(body.rows)) {
      if (!seen.has(tr.dataset.subscription)) tr.remove();
    }
  }

  function renderGroups(subs) {
    const body = $('[data-testid="stream-groups"] tbody');
    const rows = [];
    for (const sub of subs) {
      for (const g of (sub.stream && sub.stream.groups) || []) rows.push([sub.name, g]);
    }
    hook("stream-groups-box").hidden = !rows.length;
    while (body.rows.length > rows.length) body.deleteRow(-1);
    rows.forEach(([name, g], i) => {
      let tr = body.rows[i];
      if (!tr) {
        tr = body.insertRow();
        for (const field of ["subscription", "group", "lag", "pending", "consumers"]) {
          const td = tr.insertCell();
          td.dataset.field = field;
          if (field !== "subscription" && field !== "group") td.className = "num";
        }
      }
      tr.dataset.group = `${name}/${g.name}`;
      text($('[data-field="subscription"]', tr), name);
      text($('[data-field="group"]', tr), g.name);
      text($('[data-field="lag"]', tr), g.lag);
      text($('[data-field="pending"]', tr), g.pending);
      text($('[data-field="consumers"]', tr), g.consumers);
    });
  }

  function subscriptionRow(name) {
    const tr = document.createElement("tr");
    tr.dataset.subscription = name;
    const th = document.createElement("th");
    th.scope = "row";
    th.textContent = name;
    tr.append(th);
    for (const field of ["queue", "length", "trimmed", "format", "types"]) {
      const td = document.createElement("td");
      let target = td;
      if (field === "queue") { target = document.createElement("code"); td.append(target); }
      if (field === "length") target.dataset.testid = "queue-length";
      else target.dataset.field = field;
      if (field === "length" || field === "trimmed") td.className = "num";
      tr.append(td);
    }
    const td = document.createElement("td");
    const button = document.createElement("button");
    button.type = "button";
    button.className = "quiet";
    button.textContent = "Remove";
    button.setAttribute("aria-label", `Remove subscription ${name} (its queue is kept)`);
    button.addEventListener("click", () => removeSubscription(name));
    td.append(button);
    tr.append(td);
    return tr;
  }

  // --- the chart -----------------------------------------------------------------------

  function cssVar(name) {
    return getComputedStyle(document.documentElement).getPropertyValue(name).trim();
  }

  function makePlot(data) {
    const box = $("#chart");
    const fg = cssVar("--muted"), line = cssVar("--line"), accent = cssVar("--accent");
    const axis = { stroke: fg, grid: { stroke: line, width: 1 }, ticks: { stroke: line, width: 1 } };
    const clock = (u, splits) => splits.map((t) => new Date(t * 1000).toLocaleTimeString());
    plot = new uPlot({
      width: Math.max(240, box.clientWidth),
      height: 220,
      scales: { x: { time: true }, y: { range: (u, min, max) => [0, Math.max(1, max * 1.1)] } },
      series: [{}, { label: "events/s", stroke: accent, width: 2, fill: accent + "33",
                     points: { show: false } }],
      axes: [Object.assign({ values: clock, space: 90 }, axis),
             Object.assign({ label: "events/s" }, axis)],
      legend: { show: false },
    }, data, box);
    const canvas = plot.ctx.canvas;
    canvas.dataset.testid = "rate-chart";
    canvas.setAttribute("role", "img");
    canvas.setAttribute("aria-labelledby", "chart-caption");
  }

  function renderChart(history) {
    if (typeof uPlot === "undefined") return;
    const data = [history.map((p) => p.t), history.map((p) => p.events)];
    if (!plot) makePlot(data);
    else plot.setData(data);
  }

  function resetPlot() {
    if (plot) { plot.destroy(); plot = null; }
    if (doc) renderChart(doc.history || []);
  }

  let resizeTimer = null;
  new ResizeObserver(() => {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(() => {
      const box = $("#chart");
      if (plot && Math.abs(plot.width - box.clientWidth) > 4) {
        plot.setSize({ width: Math.max(240, box.clientWidth), height: 220 });
      }
    }, 100);
  }).observe($("#chart"));
  matchMedia("(prefers-color-scheme: dark)").addEventListener("change", resetPlot);

  // --- the controls ----------------------------------------------------------------------

  function showResult(errorHook, input, error) {
    const out = hook(errorHook);
    out.textContent = error ? error.message : "";
    if (input) input.setAttribute("aria-invalid", error ? "true" : "false");
  }

  async function submitting(form, work) {
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    try { await work(); } finally { button.disabled = false; }
  }

  hook("param-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const form = event.currentTarget;
    const key = form.elements.key.value;
    const input = form.elements.values;
    const stream = doc && doc.stream ? doc.stream.name : null;
    if (!stream || !key) return;
    submitting(form, async () => {
      try {
        await api("PUT", `/streams/${encodeURIComponent(stream)}/${encodeURIComponent(key)}.json`,
                  { values: input.value });
        showResult("param-error", input, null);
        input.value = "";
      } catch (e) {
        showResult("param-error", input, e);
      }
      poll();
    });
  });

  hook("subscription-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const form = event.currentTarget;
    const params = {};
    for (const name of ["name", "format", "types", "filter", "max_length", "groups"]) {
      const v = form.elements[name].value.trim();
      if (v || name === "name") params[name] = v;
    }
    submitting(form, async () => {
      try {
        await api("POST", "/subscriptions.json", params);
        showResult("subscription-error", form.elements.name, null);
        form.reset();
      } catch (e) {
        showResult("subscription-error", form.elements.name, e);
      }
      poll();
    });
  });

  async function removeSubscription(name) {
    try {
      await api("DELETE", `/subscriptions/${encodeURIComponent(name)}.json`);
      showResult("subscription-remove-error", null, null);
    } catch (e) {
      showResult("subscription-remove-error", null, e);
    }
    poll();
  }

  hook("restart-form").addEventListener("submit", (event) => {
    event.preventDefault();
    submitting(event.currentTarget, async () => {
      try {
        await api("POST", "/wader/restart.json");
        showResult("restart-error", null, null);
      } catch (e) {
        showResult("restart-error", null, e);
      }
      poll();
    });
  });

  poll();
})();
