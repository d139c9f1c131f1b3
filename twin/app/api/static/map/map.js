/* CityTwin live map: the city from its GeoJSON, drawn on a canvas, following a session
   or the live service over a WebSocket (a key frame, then delta frames). No libraries,
   nothing loaded from elsewhere. */
"use strict";

(function () {
  const SECTIONS = ["signals", "queues", "vehicles", "evs", "incidents", "vms"];
  const COLORS = { green: "#2e7d32", yellow: "#f9a825", all_red: "#c62828" };
  const canvas = document.getElementById("map");
  const ctx = canvas.getContext("2d");
  const statusEl = document.getElementById("status");
  const panel = document.getElementById("panel");
  const panelBody = document.getElementById("panel-body");

  const st = {
    key: "", mode: "session", target: "", geo: null, edges: [], signals: {}, pois: [],
    vms: [], zones: [], frame: emptyFrame(), frames: 0, ws: null, view: null,
    selected: null, dirty: true, errors: [], spat: null,
  };

  function emptyFrame() {
    const f = { t_s: null };
    SECTIONS.forEach((s) => { f[s] = {}; });
    return f;
  }

  // ------------------------------------------------------------------ set-up
  function params() {
    const out = {};
    const h = window.location.hash.replace(/^#/, "");
    h.split("&").forEach((kv) => {
      if (!kv) return;
      const i = kv.indexOf("=");
      const k = decodeURIComponent(i < 0 ? kv : kv.slice(0, i));
      out[k] = i < 0 ? "" : decodeURIComponent(kv.slice(i + 1));
    });
    return out;
  }

  function start() {
    const p = params();
    st.key = p.key || sessionStorage.getItem("citytwin-key") || "";
    if (p.key) {
      sessionStorage.setItem("citytwin-key", p.key);
      delete p.key; // the key does not stay in the address bar
      const rest = Object.keys(p).map((k) => encodeURIComponent(k) + "=" + encodeURIComponent(p[k])).join("&");
      history.replaceState(null, "", window.location.pathname + (rest ? "#" + rest : ""));
    }
    if ("session" in p) { st.mode = "session"; st.target = p.session; }
    else if ("live" in p) { st.mode = "live"; st.target = ""; }
    else if ("city" in p) { st.mode = "city"; st.target = p.city; }
    document.getElementById("key").value = st.key;
    document.getElementById("mode").value = st.mode;
    document.getElementById("target").value = st.target;
    document.getElementById("connect").addEventListener("submit", (ev) => {
      ev.preventDefault();
      st.key = document.getElementById("key").value.trim();
      st.mode = document.getElementById("mode").value;
      st.target = document.getElementById("target").value.trim();
      sessionStorage.setItem("citytwin-key", st.key);
      open();
    });
    document.getElementById("close").addEventListener("click", () => { st.selected = null; panel.hidden = true; st.dirty = true; });
    canvas.addEventListener("click", onClick);
    installPanZoom();
    window.addEventListener("resize", () => { resize(); st.dirty = true; });
    resize();
    requestAnimationFrame(loop);
    if (st.key && (st.target || st.mode === "live")) open();
  }

  function setStatus(text) {
    statusEl.textContent = text;
    statusEl.dataset.signals = String(Object.keys(st.signals).length);
    statusEl.dataset.vehicles = String(Object.keys(st.frame.vehicles).length);
    statusEl.dataset.frames = String(st.frames);
    statusEl.dataset.t = st.frame.t_s == null ? "" : String(st.frame.t_s);
  }

  async function api(path) {
    const r = await fetch(path, { headers: { Authorization: "Bearer " + st.key } });
    if (!r.ok) {
      let detail = r.statusText;
      try { detail = (await r.json()).detail; } catch (e) { /* not JSON */ }
      throw new Error(r.status + ": " + (typeof detail === "string" ? detail : JSON.stringify(detail)));
    }
    return r.json();
  }

  async function open() {
    if (st.ws) { st.ws.onclose = null; st.ws.close(); st.ws = null; }
    st.frame = emptyFrame();
    st.frames = 0;
    const geoPath = st.mode === "session" ? "/v1/sessions/" + encodeURIComponent(st.target) + "/map/geojson"
      : st.mode === "live" ? "/v1/live/map/geojson" : "/v1/cities/" + encodeURIComponent(st.target) + "/geojson";
    setStatus("loading the map ...");
    try {
      loadGeo(await api(geoPath));
    } catch (e) {
      setStatus("map: " + e.message);
      return;
    }
    setStatus(st.geo.properties.city + ": " + Object.keys(st.signals).length + " signals");
    if (st.mode !== "city") connect();
  }

  function loadGeo(g) {
    st.geo = g;
    st.edges = []; st.signals = {}; st.pois = []; st.vms = []; st.zones = [];
    g.features.forEach((f) => {
      const p = f.properties;
      if (p.kind === "edge") st.edges.push({ id: p.id, pts: f.geometry.coordinates, p: p });
      else if (p.kind === "signal") st.signals[p.id] = { pt: f.geometry.coordinates, p: p };
      else if (p.kind === "poi") st.pois.push({ pt: f.geometry.coordinates, p: p });
      else if (p.kind === "vms") st.vms.push({ pt: f.geometry.coordinates, p: p });
      else if (p.kind === "zone") st.zones.push({ ring: f.geometry.coordinates[0], p: p });
    });
    st.edgeById = {};
    st.edges.forEach((e) => { st.edgeById[e.id] = e; });
    fit();
    st.dirty = true;
  }

  // ------------------------------------------------------------------ stream
  function connect() {
    const proto = window.location.protocol === "https:" ? "wss:" : "ws:";
    const path = st.mode === "session" ? "/v1/sessions/" + encodeURIComponent(st.target) + "/map/stream"
      : "/v1/live/map/stream";
    const ws = new WebSocket(proto + "//" + window.location.host + path);
    st.ws = ws;
    ws.onopen = () => ws.send(JSON.stringify({ key: st.key }));
    ws.onmessage = (ev) => {
      const msg = JSON.parse(ev.data);
      if (msg.type === "key") { st.frame = emptyFrame(); apply(msg); }
      else if (msg.type === "delta") apply(msg);
      else if (msg.type === "end") { setStatus("ended at t = " + fmt(msg.t_s) + " s"); return; }
      else if (msg.type === "error") { setStatus("stream: " + msg.error); return; }
      st.frames += 1;
      st.dirty = true;
      const f = st.frame;
      setStatus(st.geo.properties.city + "  t = " + fmt(f.t_s) + " s  signals " + Object.keys(st.signals).length +
        (f.vehicles_shown ? "  vehicles " + Object.keys(f.vehicles).length : "") +
        (f.counts && f.counts.running != null ? "  running " + f.counts.running : ""));
      if (st.selected) showPanel(st.selected);
    };
    ws.onclose = (ev) => { if (st.ws === ws && ev.code === 1008) setStatus("refused: " + (ev.reason || "key")); };
  }

  function apply(msg) {
    const f = st.frame;
    Object.keys(msg).forEach((k) => {
      if (k === "type" || k === "seq" || k === "removed") return;
      if (SECTIONS.includes(k)) {
        const into = f[k] || (f[k] = {});
        Object.keys(msg[k]).forEach((id) => {
          const v = msg[k][id];
          if (k === "signals" && into[id] && msg.type === "delta") Object.assign(into[id], v);
          else into[id] = v;
        });
      } else f[k] = msg[k];
    });
    const removed = msg.removed || {};
    Object.keys(removed).forEach((k) => { removed[k].forEach((id) => { if (f[k]) delete f[k][id]; }); });
  }

  // ------------------------------------------------------------------ view
  function resize() {
    const r = canvas.getBoundingClientRect();
    const dpr = window.devicePixelRatio || 1;
    canvas.width = Math.max(1, Math.round(r.width * dpr));
    canvas.height = Math.max(1, Math.round(r.height * dpr));
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    if (st.geo && !st.view) fit();
  }

  function fit() {
    const [x0, y0, x1, y1] = st.geo.bbox;
    const r = canvas.getBoundingClientRect();
    const k = Math.cos(((y0 + y1) / 2) * Math.PI / 180);
    const w = (x1 - x0) * k || 1e-6, h = (y1 - y0) || 1e-6;
    const s = 0.92 * Math.min(r.width / w, r.height / h);
    st.view = { lon0: (x0 + x1) / 2, lat0: (y0 + y1) / 2, k: k, s: s, cx: r.width / 2, cy: r.height / 2 };
  }

  function toScreen(pt) {
    const v = st.view;
    return [v.cx + (pt[0] - v.lon0) * v.k * v.s, v.cy - (pt[1] - v.lat0) * v.s];
  }

  function installPanZoom() {
    let drag = null;
    canvas.addEventListener("mousedown", (e) => { drag = { x: e.clientX, y: e.clientY, moved: false }; });
    window.addEventListener("mousemove", (e) => {
      if (!drag || !st.view) return;
      const dx = e.clientX - drag.x, dy = e.clientY - drag.y;
      if (Math.abs(dx) + Math.abs(dy) > 2) drag.moved = true;
      st.view.cx += dx; st.view.cy += dy; drag.x = e.clientX; drag.y = e.clientY; st.dirty = true;
    });
    window.addEventListener("mouseup", () => { st.lastDragMoved = drag && drag.moved; drag = null; });
    canvas.addEventListener("wheel", (e) => {
      if (!st.view) return;
      e.preventDefault();
      const r = canvas.getBoundingClientRect();
      const mx = e.clientX - r.left, my = e.clientY - r.top;
      const f = e.deltaY < 0 ? 1.2 : 1 / 1.2;
      st.view.cx = mx + (st.view.cx - mx) * f; st.view.cy = my + (st.view.cy - my) * f; st.view.s *= f;
      st.dirty = true;
    }, { passive: false });
  }

  // ------------------------------------------------------------------ drawing
  function loop() {
    if (st.dirty && st.view) { st.dirty = false; draw(); }
    requestAnimationFrame(loop);
  }

  function draw() {
    const r = canvas.getBoundingClientRect();
    ctx.clearRect(0, 0, r.width, r.height);
    const f = st.frame;
    st.zones.forEach((z) => {
      ctx.beginPath();
      z.ring.forEach((pt, i) => { const [x, y] = toScreen(pt); if (i) ctx.lineTo(x, y); else ctx.moveTo(x, y); });
      ctx.fillStyle = "rgba(33,150,243,0.12)"; ctx.fill();
    });
    st.edges.forEach((e) => {
      const q = f.queues[e.id] || 0;
      ctx.beginPath();
      e.pts.forEach((pt, i) => { const [x, y] = toScreen(pt); if (i) ctx.lineTo(x, y); else ctx.moveTo(x, y); });
      ctx.lineWidth = 1 + e.p.lanes;
      ctx.strokeStyle = q > 0 ? queueColor(q) : "#b0b7bb";
      ctx.stroke();
    });
    Object.keys(f.incidents).forEach((id) => {
      const i = f.incidents[id];
      if (i.lon == null) return;
      const [x, y] = toScreen([i.lon, i.lat]);
      ctx.beginPath(); ctx.moveTo(x, y - 9); ctx.lineTo(x + 8, y + 6); ctx.lineTo(x - 8, y + 6); ctx.closePath();
      ctx.fillStyle = "#ff6f00"; ctx.fill(); ctx.strokeStyle = "#000"; ctx.lineWidth = 1; ctx.stroke();
    });
    Object.keys(f.vehicles).forEach((id) => {
      const [x, y] = toScreen(f.vehicles[id]);
      ctx.fillStyle = "#1565c0"; ctx.fillRect(x - 1.5, y - 1.5, 3, 3);
    });
    Object.keys(f.evs).forEach((id) => {
      const ev = f.evs[id];
      if (ev.track && ev.track.length > 1) {
        ctx.beginPath();
        ev.track.forEach((pt, i) => { const [x, y] = toScreen(pt); if (i) ctx.lineTo(x, y); else ctx.moveTo(x, y); });
        ctx.strokeStyle = "rgba(216,27,96,0.6)"; ctx.lineWidth = 2; ctx.stroke();
      }
      if (ev.lon == null) return;
      const [x, y] = toScreen([ev.lon, ev.lat]);
      ctx.save(); ctx.translate(x, y); ctx.rotate(Math.PI / 4);
      ctx.fillStyle = "#d81b60"; ctx.fillRect(-5, -5, 10, 10); ctx.restore();
    });
    st.pois.forEach((p) => {
      const [x, y] = toScreen(p.pt);
      ctx.fillStyle = p.p.role === "hospital" ? "#e53935" : p.p.role === "fire_station" ? "#6d4c41" : "#00897b";
      ctx.font = "bold 11px system-ui"; ctx.fillText(p.p.role === "hospital" ? "H" : p.p.role === "fire_station" ? "F" : "S", x - 4, y + 4);
    });
    st.vms.forEach((v) => {
      const [x, y] = toScreen(v.pt);
      const msg = f.vms[v.p.id];
      ctx.fillStyle = msg ? "#ffca28" : "#546e7a"; ctx.fillRect(x - 4, y - 3, 8, 6);
      if (msg && msg.text) { ctx.fillStyle = "#333"; ctx.font = "10px system-ui"; ctx.fillText(msg.text.slice(0, 40), x + 6, y - 4); }
    });
    Object.keys(st.signals).forEach((id) => {
      const [x, y] = toScreen(st.signals[id].pt);
      const s = f.signals[id];
      ctx.beginPath(); ctx.arc(x, y, 5.5, 0, 2 * Math.PI);
      ctx.fillStyle = s ? (s.local ? "#757575" : COLORS[s.interval] || "#9e9e9e") : "#9e9e9e";
      ctx.fill();
      ctx.lineWidth = s && s.priority_stage != null ? 3 : 1;
      ctx.strokeStyle = s && s.priority_stage != null ? "#6a1b9a" : "#263238";
      ctx.stroke();
      if (st.selected === id) { ctx.beginPath(); ctx.arc(x, y, 10, 0, 2 * Math.PI); ctx.strokeStyle = "#000"; ctx.lineWidth = 2; ctx.stroke(); }
    });
  }

  function queueColor(q) {
    const a = Math.min(1, 0.25 + q / 20);
    return "rgba(239,108,0," + a.toFixed(2) + ")";
  }

  // ------------------------------------------------------------------ the signal panel
  function signalAt(mx, my) {
    let best = null, bestD = 12;
    Object.keys(st.signals).forEach((id) => {
      const [x, y] = toScreen(st.signals[id].pt);
      const d = Math.hypot(x - mx, y - my);
      if (d < bestD) { best = id; bestD = d; }
    });
    return best;
  }

  function onClick(e) {
    if (st.lastDragMoved || !st.view) return;
    const r = canvas.getBoundingClientRect();
    const id = signalAt(e.clientX - r.left, e.clientY - r.top);
    st.selected = id;
    st.dirty = true;
    if (!id) { panel.hidden = true; return; }
    st.spat = null;
    showPanel(id);
    if (st.mode === "live") {
      api("/v1/live/spat").then((b) => {
        st.spat = (b.data || []).find((m) => JSON.stringify(m).includes('"' + id + '"')) || null;
        if (st.selected === id) showPanel(id);
      }).catch(() => { st.spat = null; });
    }
  }

  function esc(s) {
    return String(s).replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" }[c]));
  }

  function fmt(x) { return x == null ? "–" : (Math.round(x * 10) / 10).toFixed(1); }

  function showPanel(id) {
    const sig = st.signals[id];
    const s = st.frame.signals[id];
    const t = st.frame.t_s;
    const p = sig.p;
    let html = "<h2>Signal " + esc(id) + "</h2>";
    html += "<div>cycle " + fmt(p.cycle_s) + " s, offset " + fmt(p.offset_s) + " s</div>";
    if (s) {
      const toChange = s.next_change_s != null && t != null ? s.next_change_s - t : null;
      html += '<div class="now">now: <b data-field="interval">' + esc(s.interval) + "</b> of stage <b data-field=\"stage\">" +
        esc(s.stage) + "</b>" + (s.interval !== "green" ? " → stage " + esc(s.target) : "") + "</div>";
      html += '<div>time to change: <b data-field="to-change">' + (toChange == null ? "–" : fmt(Math.max(0, toChange)) + " s") + "</b>" +
        (s.min_end_s != null && t != null ? " (green may end in " + fmt(Math.max(0, s.min_end_s - t)) + " s)" : "") + "</div>";
      if (s.priority_stage != null) html += "<div>priority: stage " + esc(s.priority_stage) + "</div>";
      if (s.local) html += "<div>local control</div>";
      if (s.queue_veh != null) html += "<div>queue: " + fmt(s.queue_veh) + " veh halting</div>";
      if (s.state) html += '<div>shows <code>' + esc(s.state) + "</code></div>";
    } else {
      html += "<div>no state yet</div>";
    }
    html += "<table><tr><th>stage</th><th>green</th><th>min</th><th>max</th><th>state</th></tr>";
    p.stages.forEach((g) => {
      const cur = s && s.stage === g.stage;
      html += "<tr" + (cur ? ' class="current"' : "") + "><td>" + g.stage + "</td><td>" + fmt(g.green_s) + "</td><td>" +
        fmt(g.min_green_s) + "</td><td>" + fmt(g.max_green_s) + "</td><td><code>" + esc(g.state) + "</code></td></tr>";
    });
    html += "</table>";
    if (st.spat) {
      html += "<h3>SPaT</h3><pre>" + esc(JSON.stringify(st.spat, null, 1)).slice(0, 4000) + "</pre>";
    }
    panelBody.innerHTML = html;
    panel.hidden = false;
    panel.dataset.signal = id;
  }

  // ------------------------------------------------------------------ for tests and the console
  window.citytwinMap = {
    signalCount: () => Object.keys(st.signals).length,
    signalStates: () => Object.keys(st.frame.signals).length,
    vehicleCount: () => Object.keys(st.frame.vehicles).length,
    vehicles: () => st.frame.vehicles,
    t: () => st.frame.t_s,
    frames: () => st.frames,
    signalScreenXY: (id) => {
      const r = canvas.getBoundingClientRect();
      const [x, y] = toScreen(st.signals[id].pt);
      return [r.left + x, r.top + y];
    },
  };

  start();
})();
