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
    if (c.queue === "urgent" && c.status !== "with_agent") tr.classList.add("alert");
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
      [["Caller", "c-who"], ["Priority", null], ["Reason", null], ["Transfers", "num c-num"], ["Waiting", "num c-time"]]
        .forEach(function (t) { hr.appendChild(el("th", t[1], t[0])); });
      head.appendChild(hr);
      table.appendChild(head);
      table.classList.add("fit");
      var body = el("tbody");
      fill(body, q.calls.map(waitingRow), 5, "nobody waiting");
      table.appendChild(body);
      block.appendChild(table);
      box.appendChild(block);
    });
    document.getElementById("count-waiting").textContent = total;
  }


  // ---------- call backs, voicemail, agents: what operators act on ----------
  function actionForm(urlKey, sid, label, cls) {
    var form = el("form");
    form.method = "post";
    form.action = root.dataset[urlKey].replace("SID", encodeURIComponent(sid));
    [["csrf_token", root.dataset.csrf], ["next", root.dataset.next]].forEach(function (f) {
      var input = el("input");
      input.type = "hidden"; input.name = f[0]; input.value = f[1];
      form.appendChild(input);
    });
    var button = el("button", cls || null, label);
    button.type = "submit";
    form.appendChild(button);
    return form;
  }

  function numberCell(c) {
    // The full number of a caller waiting for a call back: the operator rings them.
    var cell = td();
    var link = el("a", "number", c.number || c.from || "unknown");
    if (c.number) link.href = "tel:" + c.number; else link.href = root.dataset.callUrl.replace("SID", encodeURIComponent(c.sid));
    cell.appendChild(link);
    var page = callLink(c.sid, "call");
    page.className = "small";
    cell.appendChild(document.createTextNode(" "));
    cell.appendChild(page);
    return cell;
  }

  function callbackRow(c) {
    var tr = el("tr");
    tr.dataset.sid = c.sid;
    if (c.urgent && c.state !== "failed") tr.classList.add("alert");
    tr.appendChild(numberCell(c));
    var reason = td(human(c.reason));
    if (c.urgent) { reason.appendChild(document.createTextNode(" ")); reason.appendChild(tag("urgent", "urgent")); }
    if (c.after_hours) { reason.appendChild(document.createTextNode(" ")); reason.appendChild(tag("out of hours")); }
    tr.appendChild(reason);
    var state = td();
    state.appendChild(tag(c.state, "cb-" + c.state));
    if (c.attempts) state.appendChild(el("span", "muted small", " " + c.attempts + "×" + (c.last_result ? " " + human(c.last_result).replace("-", " ") : "")));
    tr.appendChild(state);
    tr.appendChild(ticking(td("", "num"), c.since, false));
    var act = td(null, "actions");
    if (c.state !== "calling") act.appendChild(actionForm("callbackUrl", c.sid, "Call now", "call"));
    act.appendChild(actionForm("doneUrl", c.sid, "Done"));
    tr.appendChild(act);
    return tr;
  }

  function voicemailRow(c) {
    var tr = el("tr");
    tr.dataset.sid = c.sid;
    tr.appendChild(numberCell(c));
    var msg = td(null, "message");
    var text = c.text ? "“" + c.text + "”" : (c.stored ? "(no transcript)" : "(fetching…)");
    var clip = el("span", "clip", text);
    msg.title = c.text || "";
    msg.appendChild(clip);
    if (c.length) msg.appendChild(el("span", "muted small", " " + Math.round(c.length) + " s"));
    tr.appendChild(msg);
    tr.appendChild(ticking(td("", "num"), c.since, false));
    var act = td(null, "actions");
    var play = el("a", "small", "Play");
    play.href = root.dataset.callUrl.replace("SID", encodeURIComponent(c.sid)) + "#voicemail";
    act.appendChild(play);
    act.appendChild(actionForm("handledUrl", c.sid, "Handled"));
    tr.appendChild(act);
    return tr;
  }

  function renderAgents(a) {
    a = a || { agents: [], available: 0, on_call: 0, registered: 0 };
    document.getElementById("count-available").textContent = a.available + " available";
    fill(document.getElementById("agents"), a.agents.map(function (ag) {
      var tr = el("tr");
      tr.dataset.agent = ag.name;
      tr.appendChild(td(ag.name));
      var st = td(); st.appendChild(tag(ag.state === "on_call" ? "on a call" : ag.state, ag.state)); tr.appendChild(st);
      var with_ = td();
      if (ag.caller) with_.appendChild(callLink(ag.caller, ag.caller_from)); else with_.textContent = "–";
      tr.appendChild(with_);
      tr.appendChild(ag.since ? ticking(td("", "num"), ag.since, false) : td("", "num"));
      return tr;
    }), 4, "no agents registered (ivr agents add NAME +NUMBER)");
    document.getElementById("agents-note").textContent = a.registered + " registered · " + a.on_call +
      " on a call · " + a.available + " waiting on the agent line";
  }

  // ---------- urgent alert: a banner, and optionally a sound and a browser notification ----------
  var alerted = {};          // sids already announced; an urgent caller is announced once
  var audio = null;
  var switches = { sound: document.getElementById("alert-sound"), notify: document.getElementById("alert-notify") };

  function beep() {
    try {
      audio = audio || new (window.AudioContext || window.webkitAudioContext)();
      [0, 0.3].forEach(function (at) {
        var osc = audio.createOscillator(), gain = audio.createGain();
        osc.frequency.value = 880;
        gain.gain.setValueAtTime(0.25, audio.currentTime + at);
        gain.gain.exponentialRampToValueAtTime(0.001, audio.currentTime + at + 0.25);
        osc.connect(gain); gain.connect(audio.destination);
        osc.start(audio.currentTime + at); osc.stop(audio.currentTime + at + 0.26);
      });
      root.dataset.soundsPlayed = String(Number(root.dataset.soundsPlayed || 0) + 1);
    } catch (e) { console.warn(e); }
  }

  function notify(c) {
    if (!("Notification" in window) || Notification.permission !== "granted") return;
    try {
      var n = new Notification("Urgent caller waiting", { body: human(c.reason) + " · " + c.from, tag: "ivr-" + c.sid });
      n.onclick = function () { window.focus(); };
      root.dataset.notified = String(Number(root.dataset.notified || 0) + 1);
    } catch (e) { console.warn(e); }
  }

  function alertUrgent(data) {
    var urgent = [];
    data.queues.forEach(function (q) { if (q.name === "urgent") urgent = urgent.concat(q.calls); });
    var banner = document.getElementById("urgent-alert");
    var now = {};
    urgent.forEach(function (c) {
      now[c.sid] = true;
      if (!alerted[c.sid]) {
        alerted[c.sid] = true;
        if (switches.sound && switches.sound.checked) beep();
        if (switches.notify && switches.notify.checked) notify(c);
      }
    });
    Object.keys(alerted).forEach(function (sid) { if (!now[sid]) delete alerted[sid]; });
    // Clears by itself once the caller is answered (or hangs up): they leave the urgent queue.
    banner.hidden = urgent.length === 0;
    document.body.classList.toggle("has-urgent", urgent.length > 0);
    if (urgent.length) {
      var oldest = urgent[0];
      document.getElementById("urgent-alert-title").textContent =
        urgent.length === 1 ? "Urgent caller waiting" : urgent.length + " urgent callers waiting";
      document.getElementById("urgent-alert-text").textContent = "– " + human(oldest.reason) + ", " + oldest.from;
    }
  }

  function setupSwitches() {
    ["sound", "notify"].forEach(function (name) {
      var box = switches[name];
      if (!box) return;
      box.checked = localStorage.getItem("ivr-alert-" + name) === "1";
      box.addEventListener("change", function () {
        localStorage.setItem("ivr-alert-" + name, box.checked ? "1" : "0");
        if (name === "sound" && box.checked) {
          // Browsers let a page make sound only after a click: this one unlocks it.
          audio = audio || new (window.AudioContext || window.webkitAudioContext)();
          if (audio.state === "suspended") audio.resume();
        }
        if (name === "notify" && box.checked && "Notification" in window && Notification.permission !== "granted") {
          Notification.requestPermission().then(function (p) { if (p !== "granted") { box.checked = false; } });
        }
      });
    });
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
      // Long sentences end in an ellipsis: the whole of it on hover, and on the call page.
      said.title = (c.last_said || "") + (c.confidence !== null && c.confidence !== undefined ?
        " (confidence " + Number(c.confidence).toFixed(2) + ")" : "");
      tr.appendChild(said);
      tr.appendChild(ticking(td("", "num"), c.since, false));
      return tr;
    }), 4, "no calls in the bot");
    fill(document.getElementById("with-agent"), data.with_agent.map(function (c) {
      var tr = el("tr");
      tr.dataset.sid = c.sid;
      if (c.bounced) tr.classList.add("bounced");
      var who = td(); who.appendChild(callLink(c.sid, c.from)); tr.appendChild(who);
      tr.appendChild(td(c.agent || "–"));
      var reason = td(human(c.reason));
      if (c.queue === "urgent") { reason.appendChild(document.createTextNode(" ")); reason.appendChild(tag("urgent", "urgent")); }
      tr.appendChild(reason);
      tr.appendChild(ticking(td("", "num"), c.since, false));
      return tr;
    }), 4, "no calls with an agent");
    fill(document.getElementById("callbacks"), data.callbacks.map(callbackRow), 5, "no call backs waiting");
    fill(document.getElementById("voicemails"), (data.voicemails || []).map(voicemailRow), 4, "no new voicemail");
    renderAgents(data.agents);
    document.getElementById("count-bot").textContent = data.in_bot.length;
    document.getElementById("count-agent").textContent = data.with_agent.length;
    document.getElementById("count-callbacks").textContent =
      data.callbacks.filter(function (c) { return c.state !== "failed"; }).length;
    document.getElementById("count-voicemail").textContent = (data.voicemails || []).length;
    alertUrgent(data);
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

  setupSwitches();
  refreshFigures();
  setInterval(function () { if (Date.now() - lastKpiFetch > 60000) refreshFigures(); }, 5000);
  setInterval(tick, 1000);
  tick();
  connect();
})();
