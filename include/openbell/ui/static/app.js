// openbell Trading view: one account's snapshot over the WebSocket, then deltas; reconnects with backoff.
"use strict";
(() => {
  const $ = (id) => document.getElementById(id);
  const ET = new Intl.DateTimeFormat("en-US", { timeZone: "America/New_York", hour12: false,
    hour: "2-digit", minute: "2-digit", second: "2-digit" });
  const STALE_AFTER = 15000; // ms without any message (heartbeats come every 5 s)
  const state = { data: null, decided: {}, clock: null, lastMessage: 0, ws: null, retry: 0, session: null, dirty: false };

  const num = (v, d = 2) => (v === null || v === undefined || v === "" ? "–" : Number(v).toFixed(d));
  const et = (iso) => (iso ? ET.format(new Date(iso)) : "–");
  const cell = (text, cls) => { const td = document.createElement("td"); td.textContent = text;
    if (cls) td.className = cls; return td; };
  function fill(tbody, rows, build) {
    const frag = document.createDocumentFragment();
    for (const r of rows) { const tr = document.createElement("tr"); build(tr, r); frag.appendChild(tr); }
    tbody.replaceChildren(frag);
  }

  // -- the market clock, advanced locally between heartbeats -------------------------------------
  function marketNow() {
    const c = state.clock;
    if (!c) return null;
    return new Date(Date.parse(c.market_time) + (Date.now() - c.received) * c.speed);
  }

  // -- applying messages ---------------------------------------------------------------------------
  function upsert(list, row, key) {
    const k = key(row), i = list.findIndex((r) => key(r) === k);
    if (i >= 0) list[i] = { ...list[i], ...row, _fresh: Date.now() };
    else list.push({ ...row, _fresh: Date.now() });
  }
  function applyRow(m) {
    const d = state.data, r = m.row || {};
    d.empty = false;
    switch (m.table) {
      case "orders": {
        const seen = d.orders.find((o) => o.client_order_id === r.client_order_id);
        const decided = state.decided[r.decision_seq] || (seen && seen.decided_at);
        upsert(d.orders, decided ? { ...r, decided_at: decided } : r, (o) => o.client_order_id);
        break;
      }
      case "fills": upsert(d.fills, r, (f) => f.execution_id); break;
      case "positions":
        if (m.op === "delete") d.positions = d.positions.filter((p) => p.symbol !== r.symbol);
        else upsert(d.positions, r, (p) => p.symbol);
        break;
      case "equity": upsert(d.equity, r, (e) => e.ts); d.equity.sort((a, b) => Date.parse(a.ts) - Date.parse(b.ts)); break;
      case "signals": {
        const cur = d.signals.length ? Date.parse(d.signals[0].ts) : 0, ts = Date.parse(r.ts);
        if (ts > cur) d.signals = [r]; else if (ts === cur) upsert(d.signals, r, (s) => s.symbol);
        break;
      }
      case "decisions": {
        const prev = d.last_decision;
        state.decided[r.seq] = r.ts;
        if (!prev || r.seq >= prev.seq) {
          if (r.param_version_id !== (prev && prev.param_version_id)) {
            d.params.since = r.ts;
            d.params.in_force = d.params.versions.find((v) => v.id === r.param_version_id) ||
              (r.param_version_id ? { id: r.param_version_id } : null);
          }
          d.last_decision = { seq: r.seq, ts: r.ts, param_version_id: r.param_version_id };
        }
        break;
      }
      case "param_versions": upsert(d.params.versions, r, (v) => v.id); break;
      case "step_runs": applyStep(r); break;
      case "trading_sessions":
        d.phase = r;
        if (r.risk_state) d.risk = { state: r.risk_state, reason: r.risk_reason, by: r.risk_by,
          changed_at: r.risk_changed_at, open_equity: r.open_equity, cause: r.risk_cause,
          extra_loss: r.extra_loss };
        break;
      case "events": applyEvent(r); break;
    }
  }
  function applyStep(r) {
    const steps = state.data.steps, s = steps.find((x) => x.step === r.step);
    const row = { step: r.step, status: r.status, started: r.started_at, ended: r.ended_at,
      summary: r.summary || {}, error: r.error, attempts: r.attempt, _id: r.id };
    if (!s) steps.push(row);
    else if (!s._id || r.id >= s._id) Object.assign(s, row, { attempts: Math.max(s.attempts || 1, r.attempt) });
  }
  function applyEvent(e) {
    const d = state.data, h = d.health, p = e.payload || {};
    if (d.events.some((x) => x.id === e.id)) return;
    d.events.push(e);
    if (e.kind === "stream_restart") { h.stream_restarts += 1; h.last_restart = e.ts; }
    if (e.kind === "refill") { h.refills += 1; h.bars_refilled += Number(p.bars || 0); }
    if (e.kind === "refill_failed") h.refill_failures += 1;
    if (e.kind === "live_session_end") h.session_end = p;
    if (e.kind === "book_corrected" && p.symbol) {
      d.broker.positions[p.symbol] = Number(p.broker_qty);
      d.broker.source = "book_corrected events"; d.broker.as_of = e.ts;
    }
  }
  function onMessage(ev) {
    state.lastMessage = Date.now();
    const m = JSON.parse(ev.data);
    if (m.type === "snapshot") { state.data = m.data; state.retry = 0; }
    else if (m.type === "heartbeat") {
      if (m.market_time) state.clock = { market_time: m.market_time, speed: Number(m.speed || 1), received: Date.now() };
      send({ type: "pong" });
      // Nothing chosen and nothing recorded yet: follow the market's today once it has state.
      if (!state.chosen && state.data && state.data.empty && m.today && m.today !== state.data.session) {
        state.session = null; reconnect(); return;
      }
    } else if (m.type === "resync") { state.ws.close(); return; }
    else if (!state.data) return;
    else if (m.type === "row") applyRow(m);
    else if (m.type === "broker") state.data.broker = { source: "broker (live)", as_of: m.as_of, positions: m.positions };
    else if (m.type === "error") console.warn("openbell:", m.error);
    state.dirty = true;
  }

  // -- the connection --------------------------------------------------------------------------------
  function send(obj) { if (state.ws && state.ws.readyState === 1) state.ws.send(JSON.stringify(obj)); }
  function connect() {
    const url = new URL("ws", location.href);
    url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
    if (state.session) url.searchParams.set("date", state.session);
    else if (state.runId) url.searchParams.set("run_id", state.runId);
    if (state.account) url.searchParams.set("account", state.account);
    else if (state.dagId) url.searchParams.set("dag_id", state.dagId);
    const ws = (state.ws = new WebSocket(url));
    setConn("connecting");
    ws.onopen = () => { state.lastMessage = Date.now(); };
    ws.onmessage = onMessage;
    ws.onclose = (ev) => {
      if (state.ws !== ws) return;
      if (ev.code === 4401 || ev.code === 4403 || ev.code === 1008) { setConn("offline", "log in to Airflow"); }
      const delay = Math.min(30000, 500 * 2 ** state.retry) * (0.75 + Math.random() / 2);
      state.retry = Math.min(state.retry + 1, 6);
      setConn("stale", `reconnecting in ${Math.round(delay / 1000)} s`);
      setTimeout(connect, delay);
    };
  }
  function reconnect() { const old = state.ws; state.ws = null; if (old) old.close(); state.data = null; state.retry = 0; connect(); }
  function setConn(cls, title) { const el = $("conn"); el.className = `badge conn ${cls}`; el.textContent = cls;
    el.title = title || ""; }

  // -- rendering -------------------------------------------------------------------------------------
  function render() {
    const d = state.data;
    if (!d) return;
    $("empty").hidden = !d.empty;
    if ($("session-date").value !== d.session) $("session-date").value = d.session;
    state.session = d.session;
    const phase = d.phase ? d.phase.phase : d.empty ? "no data" : "—";
    $("phase").textContent = phase; $("phase").className = `badge ${phase}`;
    renderRisk(d); renderSteps(d); renderPositions(d); renderSignals(d); renderOrders(d); renderFills(d);
    renderChart(d); renderSide(d); renderEvents(d);
  }
  function renderRisk(d) {
    const r = d.risk || { state: "ACTIVE" };
    $("risk").textContent = r.state; $("risk").className = `badge risk ${r.state}`;
    const cause = r.cause === "loss_stop" ? "the loss stop" : r.cause === "operator" ? "an operator"
      : r.cause === "strategy_failed" ? "the strategy's failures" : "–";
    $("risk").title = r.reason ? `risk state (set by ${cause}): ${r.reason}` : "risk state";
    const items = [
      ["state", r.state, r.state === "HALTED" ? "bad" : r.state === "REDUCING" ? "warn" : ""],
      ["set by", cause, r.cause === "loss_stop" && r.state !== "ACTIVE" ? "bad" : ""],
      ["reason", r.reason || "–"], ["by", r.by || "–"],
      ["since", r.changed_at ? `${et(r.changed_at)} ET` : "–"],
    ];
    if (Number(r.extra_loss) > 0) items.push(["extra loss granted", `$${num(r.extra_loss)} today`, "warn"]);
    dl($("risk-detail"), items);
  }
  function renderSteps(d) {
    fill($("steps").tBodies[0], d.steps, (tr, s) => {
      const sum = s.summary || {};
      const dur = s.started && s.ended ? `${((Date.parse(s.ended) - Date.parse(s.started)) / 1000).toFixed(1)} s` : "";
      tr.append(cell(s.step), cell(s.status, `status-${s.status}`), cell(String(s.attempts || 1)), cell(dur),
        cell(s.error ? s.error.split("\n").slice(-1)[0] : sum.reason || ""));
    });
  }
  function renderPositions(d) {
    const broker = d.broker.positions || {}, book = Object.fromEntries(d.positions.map((p) => [p.symbol, p]));
    const symbols = [...new Set([...Object.keys(book), ...Object.keys(broker)])].sort();
    const rows = symbols.map((s) => ({ s, p: book[s], b: broker[s] }))
      .filter((x) => Number(x.p ? x.p.qty : 0) !== 0 || Number(x.b || 0) !== 0);
    const live = d.broker.source === "broker (live)"; // differences count only against the broker itself
    fill($("positions").tBodies[0], rows, (tr, x) => {
      const bq = Number(x.p ? x.p.qty : 0), kq = Number(x.b || 0); // the broker lists only open positions
      if (live && Math.abs(bq - kq) > 1e-9) tr.className = "diff";
      tr.append(cell(x.s), cell(num(bq, 4), "num"), cell(num(kq, 4), "num"),
        cell(num(x.p && x.p.avg_entry_price), "num"), cell(x.p ? x.p.origin : ""));
    });
    $("broker-source").textContent = `broker: ${d.broker.source}${d.broker.as_of ? ` at ${et(d.broker.as_of)} ET` : ""}`;
  }
  function renderSignals(d) {
    $("signals-ts").textContent = d.signals.length ? `at ${et(d.signals[0].ts)} ET` : "";
    const rows = [...d.signals].sort((a, b) => (b.weight || 0) - (a.weight || 0) || (b.score || 0) - (a.score || 0));
    fill($("signals").tBodies[0], rows, (tr, s) =>
      tr.append(cell(s.symbol), cell(num(s.score, 4), "num"), cell(num(s.weight, 3), "num")));
  }
  const fresh = (tr, r) => { if (r._fresh && Date.now() - r._fresh < 1500) tr.classList.add("fresh"); };
  // a notional order is its dollars (Alpaca says no qty for it), with the shares expected when known
  const qty = (o) => (o.notional === null || o.notional === undefined ? num(o.qty, 4)
    : `$${num(o.notional)}` + (Number(o.qty) ? ` (~${num(o.qty, 4)})` : ""));
  function renderOrders(d) {
    const rows = [...d.orders].reverse().slice(0, 300);
    $("orders-count").textContent = `${d.orders.length}`;
    fill($("orders").tBodies[0], rows, (tr, o) => {
      fresh(tr, o);
      tr.append(cell(et(o.decided_at || o.created_at)), cell(o.client_order_id), cell(o.symbol), cell(o.side, o.side),
        cell(qty(o), "num"), cell(num(o.filled_qty, 4), "num"), cell(num(o.filled_avg_price), "num"),
        cell(o.status, o.reject_reason ? "bad" : ""), cell(o.origin || ""));
      if (o.reject_reason) tr.title = o.reject_reason;
    });
  }
  function renderFills(d) {
    const rows = [...d.fills].sort((a, b) => Date.parse(b.ts) - Date.parse(a.ts)).slice(0, 300);
    $("fills-count").textContent = `${d.fills.length}`;
    fill($("fills").tBodies[0], rows, (tr, f) => { fresh(tr, f);
      tr.append(cell(et(f.ts)), cell(f.symbol), cell(f.side, f.side), cell(num(f.qty, 4), "num"), cell(num(f.price), "num")); });
  }
  function renderEvents(d) {
    const rows = d.events.slice(-200).reverse();
    fill($("events").tBodies[0], rows, (tr, e) => {
      const text = JSON.stringify(e.payload || {});
      tr.append(cell(et(e.ts)), cell(e.kind), cell(text.length > 120 ? `${text.slice(0, 117)}...` : text));
    });
  }
  function renderChart(d) {
    const svg = $("equity-chart"), pts = d.equity.filter((e) => e.equity !== null);
    svg.dataset.points = String(pts.length);
    const pnl = $("pnl");
    if (pts.length < 1) { svg.replaceChildren(); pnl.textContent = ""; return; }
    const xs = pts.map((p) => Date.parse(p.ts)), ys = pts.map((p) => Number(p.equity));
    const x0 = Math.min(...xs), x1 = Math.max(...xs, x0 + 60000), y0 = Math.min(...ys), y1 = Math.max(...ys, y0 + 1);
    const X = (x) => ((x - x0) / (x1 - x0)) * 790 + 5, Y = (y) => 215 - ((y - y0) / (y1 - y0)) * 210;
    const ns = "http://www.w3.org/2000/svg", base = document.createElementNS(ns, "line");
    base.setAttribute("x1", "0"); base.setAttribute("x2", "800");
    base.setAttribute("y1", String(Y(ys[0]))); base.setAttribute("y2", String(Y(ys[0])));
    base.setAttribute("stroke", "#c0c5cc"); base.setAttribute("stroke-dasharray", "4 4");
    const line = document.createElementNS(ns, "polyline");
    line.setAttribute("points", pts.map((p, i) => `${X(xs[i]).toFixed(1)},${Y(ys[i]).toFixed(1)}`).join(" "));
    line.setAttribute("fill", "none"); line.setAttribute("stroke-width", "2");
    const change = ys[ys.length - 1] - ys[0];
    line.setAttribute("stroke", change >= 0 ? "#0f7b3f" : "#b42318");
    line.setAttribute("vector-effect", "non-scaling-stroke");
    svg.replaceChildren(base, line);
    pnl.textContent = `${num(ys[ys.length - 1])}  P&L ${change >= 0 ? "+" : ""}${num(change)}`;
    pnl.className = `pnl ${change >= 0 ? "up" : "down"}`;
    $("chart-from").textContent = et(pts[0].ts); $("chart-to").textContent = et(pts[pts.length - 1].ts);
    $("chart-range").textContent = `${num(y0)} – ${num(y1)}`;
  }
  function dl(el, items) {
    const frag = document.createDocumentFragment();
    for (const [k, v, cls] of items) {
      const dt = document.createElement("dt"), dd = document.createElement("dd");
      dt.textContent = k; dd.textContent = v; if (cls) dd.className = cls; frag.append(dt, dd);
    }
    el.replaceChildren(frag);
  }
  function renderSide(d) {
    const p = d.params, v = p.in_force;
    const box = $("params"), pre = document.createElement("pre");
    pre.textContent = v && v.params ? Object.entries(v.params).map(([k, x]) => `${k}: ${JSON.stringify(x)}`).join("\n") : "";
    const head = document.createElement("div");
    head.textContent = v ? `v${v.id}${v.source ? ` (${v.source})` : ""} in force since ${et(p.since)} ET` :
      "default parameters (no stored version used)";
    box.replaceChildren(head, pre);
    const h = d.health, now = marketNow(), last = d.equity.length ? Date.parse(d.equity[d.equity.length - 1].ts) : null;
    const live = d.phase && d.phase.phase === "trading";
    const age = now && last && live ? Math.max(0, (now - last) / 1000) : null;
    dl($("health"), [
      ["last minute decided", last ? `${et(new Date(last).toISOString())} ET` : "–"],
      ["age (market)", age === null ? "–" : `${age.toFixed(0)} s`, age !== null && age > 120 ? "warn" : ""],
      ["stream restarts", String(h.stream_restarts), h.stream_restarts ? "warn" : ""],
      ["gaps refilled", `${h.refills} (${h.bars_refilled} bars)`],
      ["refills failed", String(h.refill_failures), h.refill_failures ? "bad" : ""],
      ["view", state.ws && state.ws.readyState === 1 && Date.now() - state.lastMessage < STALE_AFTER ? "live" : "stale"],
    ]);
    const end = h.session_end || {};
    const lag = now && d.last_decision && live ? (now - Date.parse(d.last_decision.ts) - 60000) / 1000 : null;
    dl($("latency"), [
      ["bar → order sent p50", end.latency_p50_ms != null ? `${num(end.latency_p50_ms, 1)} ms` : "at session end"],
      ["bar → order sent p99", end.latency_p99_ms != null ? `${num(end.latency_p99_ms, 1)} ms` : "at session end"],
      ["samples", end.latency_samples != null ? String(end.latency_samples) : "–"],
      ["decision lag (market)", lag === null ? "–" : `${Math.max(0, lag).toFixed(0)} s`],
    ]);
  }
  function tick() {
    const now = marketNow();
    $("market-time").textContent = now ? `${ET.format(now)} ET` : "--:--:-- ET";
    const open = state.ws && state.ws.readyState === 1;
    if (open && Date.now() - state.lastMessage > STALE_AFTER) { setConn("stale", "no heartbeat"); state.ws.close(); }
    else if (open && state.data) setConn("live");
    if (state.dirty) { state.dirty = false; render(); } else if (state.data) renderSide(state.data);
  }

  // -- the account: what the app's routes and socket show (?account=NAME, else the first one allowed) ----
  function api(path) {
    const url = new URL(path, location.href);
    url.search = "";
    if (state.account) url.searchParams.set("account", state.account);
    else if (state.dagId) url.searchParams.set("dag_id", state.dagId); // the run's DAG names its account
    return url;
  }
  function pageQuery() {
    const q = new URLSearchParams();
    if (state.session) q.set("date", state.session);
    if (state.account) q.set("account", state.account);
    return `?${q}`;
  }
  function renderAccounts(me) {
    const sel = $("account"), names = (me && me.accounts) || [];
    sel.replaceChildren(...names.map((n) => { const o = document.createElement("option");
      o.value = n || ""; o.textContent = n || "default"; return o; }));
    sel.value = (me && me.account) || "";
    sel.hidden = names.length < 2; // a picker only when there is a choice
  }
  function chooseAccount(name) {
    if (!name || name === state.account) return;
    state.account = name;
    history.replaceState(null, "", pageQuery());
    reconnect(); loadSessions(); loadControls();
  }
  $("account").addEventListener("change", (e) => chooseAccount(e.target.value));

  // -- the controls: a run of the account's trading_control DAG through Airflow's REST API, as this user ----
  async function loadControls() {
    let me = null;
    try { const r = await fetch(api("api/me"), { credentials: "same-origin" }); if (r.ok) me = await r.json(); }
    catch (e) { /* shown as "not allowed" */ }
    if (me && me.account && !state.account) state.account = me.account;
    renderAccounts(me);
    state.control = me && me.control && me.control.allowed ? me.control : null;
    const dag = (me && me.control && me.control.dag_id) || "trading_control";
    $("control-dag").textContent = dag;
    $("controls").hidden = !state.control;
    $("controls-note").textContent = state.control ? "" :
      `Controls are shown to users Airflow allows to trigger ${dag}.`;
  }
  async function trigger(ev) {
    ev.preventDefault();
    const c = state.control, action = $("control-action").value, reason = $("control-reason").value.trim();
    const out = $("control-result");
    if (!c || !reason) { out.textContent = "a reason is required"; out.className = "note bad"; return; }
    // An extra loss budget (dollars) goes with a resume only; after a loss stop a resume needs one.
    const extra = $("control-extra-loss").value.trim(), budget = Number(extra);
    const risk = (state.data && state.data.risk) || {};
    if (action === "resume" && extra && !(Number.isFinite(budget) && budget > 0)) {
      out.textContent = "the extra loss budget must be a number of dollars > 0"; out.className = "note bad"; return;
    }
    if (action === "resume" && !extra && risk.cause === "loss_stop" && risk.state !== "ACTIVE") {
      out.textContent = "the loss stop stopped this session: a resume needs an extra loss budget (dollars)";
      out.className = "note bad"; return;
    }
    // The page lives one level below Airflow's root (the plugin's /openbell).
    const url = new URL(`../${c.path}`, new URL(".", location.href));
    const body = { logical_date: null, conf: { action, reason, session_date: state.session || null } };
    if (action === "resume" && extra) body.conf.extra_loss_budget = budget;
    $("control-submit").disabled = true;
    out.textContent = `requesting ${action}…`; out.className = "note";
    try {
      const r = await fetch(url, { method: "POST", credentials: "same-origin",
        headers: { "Content-Type": "application/json", Accept: "application/json" }, body: JSON.stringify(body) });
      const answer = await r.json().catch(() => ({}));
      if (r.ok) {
        out.textContent = `${action} requested: run ${answer.dag_run_id} of ${c.dag_id} (${answer.state})`;
        out.dataset.runId = answer.dag_run_id; $("control-reason").value = ""; $("control-extra-loss").value = "";
      } else {
        const detail = typeof answer.detail === "string" ? answer.detail : JSON.stringify(answer.detail || "");
        out.textContent = `Airflow refused (HTTP ${r.status}): ${detail}`; out.className = "note bad";
      }
    } catch (e) { out.textContent = `not sent: ${e}`; out.className = "note bad"; }
    finally { $("control-submit").disabled = false; }
  }
  $("controls").addEventListener("submit", trigger);

  // -- session choice --------------------------------------------------------------------------------
  async function loadSessions() {
    try {
      const r = await fetch(api("api/sessions"), { credentials: "same-origin" });
      if (!r.ok) return;
      const { sessions } = await r.json(), sel = $("session-list");
      sel.replaceChildren(...[["", "recorded sessions…"], ...sessions.map((s) => [s, s])].map(([v, t]) => {
        const o = document.createElement("option"); o.value = v; o.textContent = t; return o; }));
    } catch (e) { /* the list is a convenience */ }
  }
  function choose(date) { if (!date || date === state.session) return; state.session = date; state.chosen = true;
    history.replaceState(null, "", pageQuery()); reconnect(); }
  $("session-date").addEventListener("change", (e) => choose(e.target.value));
  $("session-list").addEventListener("change", (e) => choose(e.target.value));

  const query = new URLSearchParams(location.search);
  state.session = query.get("date");
  state.runId = query.get("run_id"); // the per-run tab of the Airflow UI
  state.account = query.get("account") || null;
  state.dagId = query.get("dag_id");
  state.chosen = Boolean(state.session || state.runId);
  connect(); loadSessions(); loadControls();
  setInterval(tick, 250);
  window.openbell = state; // for tests and the curious
})();
