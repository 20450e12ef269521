/* ivr operator dashboard: live view over Server-Sent Events, KPIs and charts over fetch.
 * Every value from the server is put in the page with textContent, never as HTML. */
(function () {
  "use strict";
  var root = document.getElementById("dashboard");
  if (!root) return;
  var SL = Number(root.dataset.sl) || 20;
  var offset = 0;            // server clock minus browser clock, ms: waits tick in server time
  var lastKpiFetch = 0;
  var charts = {};

  // ---------- helpers ----------
  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }
  function td(text, cls) { return el("td", cls, text); }
  function human(s) { return s ? String(s).replace(/_/g, " ") : "–"; }
  function duration(sec) {
    sec = Math.max(0, Math.floor(sec));
    var h = Math.floor(sec / 3600), m = Math.floor((sec % 3600) / 60), s = sec % 60;
    var mm = (h ? String(m).padStart(2, "0") : String(m));
    return (h ? h + ":" : "") + mm + ":" + String(s).padStart(2, "0");
  }
  function serverNow() { return (Date.now() + offset) / 1000; }
  function callLink(sid, text) {
    var a = el("a", null, text || "unknown");
    a.href = root.dataset.callUrl.replace("SID", encodeURIComponent(sid));
    return a;
  }
  function tag(text, kind) { return el("span", "tag" + (kind ? " tag-" + kind : ""), text); }
  function ticking(cell, since, late) {
    cell.dataset.since = since;
    if (late) cell.dataset.late = "1";
    cell.textContent = duration(serverNow() - since);
    return cell;
  }
  function fill(tbody, rows, cols, emptyText) {
    tbody.replaceChildren();
    if (!rows.length) {
      var tr = el("tr", "empty"), c = td(emptyText);
      c.colSpan = cols;
      tr.appendChild(c);
      tbody.appendChild(tr);
    }
    rows.forEach(function (r) { tbody.appendChild(r); });
  }
  function getJSON(url) {
    return fetch(url, { credentials: "same-origin", headers: { "Accept": "application/json" } }).then(function (r) {
      if (r.status === 401) { window.location = root.dataset.loginUrl; throw new Error("logged out"); }
      if (!r.ok) throw new Error(url + " answered " + r.status);
      return r.json();
    });
  }

  // ---------- live view ----------
  function waitingRow(c) {
    var tr = el("tr");
    tr.dataset.sid = c.sid;
    if (c.late) tr.classList.add("late");
    if (c.bounced) tr.classList.add("bounced");
    var who = td(); who.appendChild(callLink(c.sid, c.from)); tr.appendChild(who);
    var pri = td(); pri.appendChild(tag(c.queue || "normal", c.queue || "normal"));
    if (c.boost) { pri.appendChild(document.createTextNode(" ")); pri.appendChild(tag(human(c.boost), "boost")); }
    tr.appendChild(pri);
    tr.appendChild(td(human(c.reason)));
    tr.appendChild(td(c.transfers, "num transfers" + (c.bounced ? " multi" : "")));
    tr.appendChild(ticking(td("", "num wait"), c.since, true));
    return tr;
  }

  function renderQueues(queues) {
    var box = document.getElementById("queues");
    box.replaceChildren();
    var total = 0;
    queues.forEach(function (q) {
      total += q.calls.length;
      var block = el("div", "queue-block");
      var h = el("h3");
      h.appendChild(tag(q.name, q.name));
      h.appendChild(el("span", "count", q.calls.length));
      block.appendChild(h);
      var table = el("table", "calls");
      var head = el("thead"), hr = el("tr");
      ["Caller", "Priority", "Reason", "Transfers", "Waiting"].forEach(function (t, i) {
        hr.appendChild(el("th", i >= 3 ? "num" : null, t));
      });
      head.appendChild(hr);
      table.appendChild(head);
      var body = el("tbody");
      fill(body, q.calls.map(waitingRow), 5, "nobody waiting");
      table.appendChild(body);
      block.appendChild(table);
      box.appendChild(block);
    });
    document.getElementById("count-waiting").textContent = total;
  }

  var lastSignature = null;

  function renderLive(data) {
    offset = data.now * 1000 - Date.now();
    // Rebuild the tables only when something changed, so a row the operator is about to
    // click does not vanish under the pointer; waits tick in place (tick()).
    var signature = JSON.stringify(data, function (k, v) {
      return (k === "now" || k === "seconds" || k === "late") ? undefined : v;
    });
    if (signature === lastSignature) return;
    lastSignature = signature;
    renderQueues(data.queues);
    fill(document.getElementById("in-bot"), data.in_bot.map(function (c) {
      var tr = el("tr");
      if (c.bounced) tr.classList.add("bounced");
      var who = td(); who.appendChild(callLink(c.sid, c.from)); tr.appendChild(who);
      var step = td(human(c.step));
      if (c.status && c.status !== "in_bot") { step.appendChild(document.createTextNode(" ")); step.appendChild(tag(human(c.status))); }
      tr.appendChild(step);
      var said = td(c.last_said ? "“" + c.last_said + "”" : "–", "said");
      if (c.confidence !== null && c.confidence !== undefined) said.title = "confidence " + Number(c.confidence).toFixed(2);
      tr.appendChild(said);
      tr.appendChild(ticking(td("", "num"), c.since, false));
      return tr;
    }), 4, "no calls in the bot");
    fill(document.getElementById("with-agent"), data.with_agent.map(function (c) {
      var tr = el("tr");
      if (c.bounced) tr.classList.add("bounced");
      var who = td(); who.appendChild(callLink(c.sid, c.from)); tr.appendChild(who);
      var q = td(); if (c.queue) q.appendChild(tag(c.queue, c.queue)); else q.textContent = "–"; tr.appendChild(q);
      tr.appendChild(td(human(c.reason)));
      tr.appendChild(td(c.transfers, "num transfers" + (c.bounced ? " multi" : "")));
      tr.appendChild(ticking(td("", "num"), c.since, false));
      return tr;
    }), 5, "no calls with an agent");
    fill(document.getElementById("callbacks"), data.callbacks.map(function (c) {
      var tr = el("tr");
      var who = td(); who.appendChild(callLink(c.sid, c.from)); tr.appendChild(who);
      tr.appendChild(td(human(c.reason)));
      tr.appendChild(td(c.transfers, "num transfers" + (c.bounced ? " multi" : "")));
      tr.appendChild(ticking(td("", "num"), c.since, false));
      return tr;
    }), 4, "no callbacks waiting");
    document.getElementById("count-bot").textContent = data.in_bot.length;
    document.getElementById("count-agent").textContent = data.with_agent.length;
    document.getElementById("count-callbacks").textContent = data.callbacks.length;
    if (Date.now() - lastKpiFetch > 10000) refreshFigures();
  }

  function tick() {
    var now = serverNow();
    document.querySelectorAll("[data-since]").forEach(function (cell) {
      var secs = now - Number(cell.dataset.since);
      cell.textContent = duration(secs);
      if (cell.dataset.late) {
        var row = cell.parentElement;
        if (secs >= SL) row.classList.add("late"); else row.classList.remove("late");
      }
    });
    var clock = document.getElementById("clock");
    if (clock) clock.textContent = new Date(now * 1000).toLocaleTimeString();
  }

  function setStatus(text, cls) {
    var s = document.getElementById("live-status");
    if (!s) return;
    s.textContent = text;
    s.className = "pill " + cls;
  }

  function connect() {
    var source = new EventSource(root.dataset.eventsUrl);
    source.addEventListener("open", function () { setStatus("live", "pill-live"); });
    source.addEventListener("live", function (ev) { setStatus("live", "pill-live"); renderLive(JSON.parse(ev.data)); });
    source.addEventListener("logout", function () { source.close(); window.location = root.dataset.loginUrl; });
    source.addEventListener("error", function () {
      setStatus("reconnecting…", "pill-down");
      // A 401 closes the stream for good: find out whether the session is over.
      if (source.readyState === EventSource.CLOSED) {
        getJSON(root.dataset.liveUrl).then(function (d) { renderLive(d); setTimeout(connect, 3000); })
          .catch(function () { setTimeout(connect, 5000); });
      }
    });
  }

  // ---------- KPIs, charts, recent calls ----------
  function fmt(value, kind) {
    if (value === null || value === undefined) return "–";
    if (kind === "pct") return Math.round(value * 100) + "%";
    if (kind === "secs") return Math.round(value) + " s";
    if (kind === "ratio") return Number(value).toFixed(2);
    return String(value);
  }

  function renderKpis(k) {
    document.querySelectorAll(".kpi").forEach(function (card) {
      var key = card.dataset.kpi, kind = card.dataset.format;
      card.querySelector(".kpi-value").textContent = fmt(k.today[key], kind);
      card.querySelector(".kpi-sub b").textContent = fmt(k.last7[key], kind);
      var warn = (key === "service_level" && k.today[key] !== null && k.today[key] < 0.8) ||
                 (key === "abandonment" && k.today[key] !== null && k.today[key] > 0.1);
      card.classList.toggle("warn", !!warn);
    });
    drawCharts(k);
  }

  var palette = { green: "#34d399", blue: "#38bdf8", grey: "#64748b", amber: "#fbbf24", red: "#f87171", violet: "#a78bfa" };

  function chart(id, config) {
    if (typeof Chart === "undefined") return;
    if (charts[id]) {
      charts[id].data = config.data;
      charts[id].update("none");
      return;
    }
    Chart.defaults.color = "#8d9bb5";
    Chart.defaults.borderColor = "rgba(36, 49, 79, .8)";
    Chart.defaults.font.family = getComputedStyle(document.body).fontFamily;
    charts[id] = new Chart(document.getElementById(id), config);
  }

  function drawCharts(k) {
    var labels = k.days.map(function (d) { return d.day; });
    chart("chart-calls", {
      type: "bar",
      data: { labels: labels, datasets: [
        { label: "contained", data: k.days.map(function (d) { return d.contained; }), backgroundColor: palette.green, stack: "s" },
        { label: "handed off", data: k.days.map(function (d) { return d.handoffs; }), backgroundColor: palette.blue, stack: "s" },
        { label: "other", data: k.days.map(function (d) { return Math.max(0, d.calls - d.contained - d.handoffs); }), backgroundColor: palette.grey, stack: "s" }
      ] },
      options: { maintainAspectRatio: false, animation: false, plugins: { legend: { position: "bottom" } },
        scales: { x: { stacked: true }, y: { stacked: true, beginAtZero: true, ticks: { precision: 0 } } } }
    });
    chart("chart-waits", {
      type: "line",
      data: { labels: labels, datasets: [
        { label: "average (s)", data: k.days.map(function (d) { return d.avg_wait; }), borderColor: palette.blue, backgroundColor: palette.blue, spanGaps: true, tension: 0.25 },
        { label: "p90 (s)", data: k.days.map(function (d) { return d.p90_wait; }), borderColor: palette.amber, backgroundColor: palette.amber, spanGaps: true, tension: 0.25 },
        { label: "target " + SL + " s", data: k.days.map(function () { return SL; }), borderColor: palette.red, borderDash: [5, 5], pointRadius: 0, borderWidth: 1 }
      ] },
      options: { maintainAspectRatio: false, animation: false, plugins: { legend: { position: "bottom" } },
        scales: { y: { beginAtZero: true } } }
    });
    var reasons = Object.keys(k.last7.handoffs_by_reason);
    chart("chart-reasons", {
      type: "bar",
      data: { labels: reasons.map(human), datasets: [
        { label: "handoffs", data: reasons.map(function (r) { return k.last7.handoffs_by_reason[r]; }),
          backgroundColor: [palette.violet, palette.blue, palette.amber, palette.red, palette.green, palette.grey] }
      ] },
      options: { indexAxis: "y", maintainAspectRatio: false, animation: false, plugins: { legend: { display: false } },
        scales: { x: { beginAtZero: true, ticks: { precision: 0 } } } }
    });
  }

  function renderRecent(data) {
    var tbody = document.querySelector("#recent tbody");
    fill(tbody, data.calls.map(function (c) {
      var tr = el("tr");
      if (c.transfers > 1) tr.classList.add("bounced");
      tr.appendChild(td(new Date(c.started_at * 1000).toLocaleTimeString()));
      var who = td(); who.appendChild(callLink(c.sid, c.from)); tr.appendChild(who);
      tr.appendChild(td(c.flow || "–"));
      tr.appendChild(td(human(c.status)));
      var out = td(); if (c.outcome) out.appendChild(tag(c.outcome, c.outcome)); else out.textContent = "in progress"; tr.appendChild(out);
      var q = td(); if (c.queue) q.appendChild(tag(c.queue, c.queue)); else q.textContent = "–"; tr.appendChild(q);
      tr.appendChild(td(human(c.reason)));
      tr.appendChild(td(c.transfers, "num transfers" + (c.transfers > 1 ? " multi" : "")));
      var w = td(c.wait_seconds === null ? "–" : Math.round(c.wait_seconds) + " s", "num");
      if (c.wait_seconds !== null && c.wait_seconds > SL) w.classList.add("late-text");
      tr.appendChild(w);
      tr.appendChild(td(c.rating ? c.rating + "/5" : "–", "num"));
      return tr;
    }), 10, "no calls in the last 24 hours");
  }

  function refreshFigures() {
    lastKpiFetch = Date.now();
    getJSON(root.dataset.kpiUrl).then(renderKpis).catch(function (e) { console.warn(e); });
    getJSON(root.dataset.callsUrl).then(renderRecent).catch(function (e) { console.warn(e); });
  }

  refreshFigures();
  setInterval(function () { if (Date.now() - lastKpiFetch > 60000) refreshFigures(); }, 5000);
  setInterval(tick, 1000);
  tick();
  connect();
})();
