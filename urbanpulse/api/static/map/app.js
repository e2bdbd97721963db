// UrbanPulse ops-center map: vanilla JavaScript, no build step, no CDN, no internet needed.
// Areas come from /v1/areas (choropleth), sensors from /v1/sensors/clusters (aggregated in
// PostGIS by zoom level), readings from the /v1/live WebSocket.  The alert list starts from the
// active alerts (GET /v1/alerts) and follows their lifecycle events on /v1/live; an operator's
// key acknowledges and resolves from the list (POST /v1/alerts/{id}/acknowledge | resolve).
// A storm (many alerts of one rule in one area, GET /v1/incidents) is one row that expands.

const TILE = 256;
const I18N = {
  vi: {
    title: "Bản đồ trung tâm điều hành", kind: "Loại", all_kinds: "Tất cả", legend: "Chú giải",
    alerts: "Cảnh báo", no_alerts: "Chưa có cảnh báo mới", live: "Trực tiếp",
    connecting: "Đang kết nối", offline: "Mất kết nối", sensors: "cảm biến",
    last24h: "24 giờ qua", no_data: "Chưa có dữ liệu", area: "Khu vực", key: "Nhập khóa API:",
    air: "Không khí", water: "Nước", waste_bin: "Thùng rác", waste_truck: "Xe rác",
    traffic_camera: "Camera giao thông", open: "Mở", acknowledged: "Đã xác nhận",
    resolved: "Đã xử lý", worst: "xấu nhất",
    critical: "Nghiêm trọng", warning: "Cảnh báo", info: "Thông tin",
    acknowledge: "Xác nhận", resolve: "Xử lý xong", sensor: "Cảm biến",
    just_now: "vừa xong", minutes: "phút", hours: "giờ", days: "ngày", in_area: "tại",
    more_members: "và còn",
  },
  en: {
    title: "Operations center map", kind: "Kind", all_kinds: "All", legend: "Legend",
    alerts: "Alerts", no_alerts: "No new alerts yet", live: "Live",
    connecting: "Connecting", offline: "Offline", sensors: "sensors",
    last24h: "Last 24 hours", no_data: "No data yet", area: "Area", key: "Enter an API key:",
    air: "Air", water: "Water", waste_bin: "Waste bin", waste_truck: "Waste truck",
    traffic_camera: "Traffic camera", open: "Open", acknowledged: "Acknowledged",
    resolved: "Resolved", worst: "worst",
    critical: "Critical", warning: "Warning", info: "Info",
    acknowledge: "Acknowledge", resolve: "Resolve", sensor: "Sensor",
    just_now: "just now", minutes: "min", hours: "h", days: "d", in_area: "in",
    more_members: "and more:",
  },
};

const state = {
  lang: localStorage.getItem("urbanpulse.lang") || "vi",
  key: null, config: null,
  zoom: 12, cx: 0, cy: 0, // view centre in world pixels at `zoom`
  areas: [], areaNames: new Map(), clusters: [],
  alertsById: new Map(), alerts: [], alertsLoaded: false, role: null,
  incidentsById: new Map(), incidents: [], expanded: new Map(), // incident id -> members or null
  drawn: { areas: 0, sensors: 0, clusters: 0 },
  live: "connecting", readingsSeen: 0, clustersDirty: false, selected: null,
};
window.urbanpulse = state; // read by the browser test and handy in the console

const $ = (id) => document.getElementById(id);
const canvas = $("map");
const ctx = canvas.getContext("2d");
const t = (k) => (I18N[state.lang][k] ?? k);

// ------------------------------------------------------------------ projection (Web Mercator)
function project(lon, lat, zoom) {
  const scale = TILE * 2 ** zoom;
  const s = Math.sin((Math.max(-85.05, Math.min(85.05, lat)) * Math.PI) / 180);
  return [((lon + 180) / 360) * scale, (0.5 - Math.log((1 + s) / (1 - s)) / (4 * Math.PI)) * scale];
}
function unproject(x, y, zoom) {
  const scale = TILE * 2 ** zoom;
  const lon = (x / scale) * 360 - 180;
  const n = Math.PI - (2 * Math.PI * y) / scale;
  return [lon, (180 / Math.PI) * Math.atan(Math.sinh(n))];
}
function toScreen(lon, lat) {
  const [x, y] = project(lon, lat, state.zoom);
  return [x - state.cx + canvas.width / 2 / devicePixelRatio, y - state.cy + canvas.height / 2 / devicePixelRatio];
}
state.screenOf = (lon, lat) => toScreen(lon, lat); // CSS pixels in the canvas
state.centre = () => unproject(state.cx, state.cy, state.zoom); // [lon, lat] of the view
function viewBBox() {
  const w = canvas.width / devicePixelRatio, h = canvas.height / devicePixelRatio;
  const [w0, n0] = unproject(state.cx - w / 2, state.cy - h / 2, state.zoom);
  const [e0, s0] = unproject(state.cx + w / 2, state.cy + h / 2, state.zoom);
  const clamp = (v, m) => Math.max(-m, Math.min(m, v));
  return [clamp(w0, 180), clamp(s0, 85), clamp(e0, 180), clamp(n0, 85)];
}
function fit(bbox) {
  const w = canvas.width / devicePixelRatio, h = canvas.height / devicePixelRatio;
  let zoom = 18;
  while (zoom > 1) {
    const [x0, y0] = project(bbox[0], bbox[3], zoom), [x1, y1] = project(bbox[2], bbox[1], zoom);
    if (x1 - x0 < w * 0.9 && y1 - y0 < h * 0.9) break;
    zoom -= 0.25;
  }
  setView(zoom, (bbox[0] + bbox[2]) / 2, (bbox[1] + bbox[3]) / 2);
}
function setView(zoom, lon, lat) {
  state.zoom = Math.max(2, Math.min(19, zoom));
  [state.cx, state.cy] = project(lon, lat, state.zoom);
  viewChanged();
}
function zoomAround(delta, sx, sy) {
  const w = canvas.width / devicePixelRatio, h = canvas.height / devicePixelRatio;
  const wx = state.cx + sx - w / 2, wy = state.cy + sy - h / 2;
  const [lon, lat] = unproject(wx, wy, state.zoom);
  const zoom = Math.max(2, Math.min(19, state.zoom + delta));
  const [nx, ny] = project(lon, lat, zoom);
  state.zoom = zoom; state.cx = nx - sx + w / 2; state.cy = ny - sy + h / 2;
  viewChanged();
}

// ------------------------------------------------------------------ data
function keyHeaders() { return state.key ? { "X-API-Key": state.key } : {}; }
async function api(path, options = {}) {
  const headers = { ...keyHeaders(), ...(options.headers || {}) };
  const response = await fetch(path, { ...options, headers });
  if (response.status === 401 && !state.config?.public_read) {
    sessionStorage.removeItem("urbanpulse.key");
    askKey();
  }
  if (!response.ok) throw new Error(`${path}: ${response.status}`);
  return response.json();
}
function askKey() {
  const key = prompt(t("key"));
  if (key) { state.key = key.trim(); sessionStorage.setItem("urbanpulse.key", state.key); }
}
async function loadAreas() {
  const body = await api("/v1/areas?simplify_m=10");
  state.areas = body.features.map((f) => ({ ...f, rings: polygonRings(f.geometry) }));
  state.areaNames = new Map(body.features.map((f) => [f.properties.area_id, f.properties.name]));
  // Draw parents first so wards lie on top of their province.
  const depth = (f) => (f.properties.parent_id ? 1 : 0);
  state.areas.sort((a, b) => depth(a) - depth(b));
  redraw();
}
function polygonRings(geometry) {
  if (!geometry) return [];
  if (geometry.type === "Polygon") return geometry.coordinates;
  if (geometry.type === "MultiPolygon") return geometry.coordinates.flat();
  return [];
}
let clusterTimer = null, clusterSeq = 0;
function viewChanged() {
  redraw();
  clearTimeout(clusterTimer);
  clusterTimer = setTimeout(loadClusters, 150);
}
async function loadClusters() {
  const seq = ++clusterSeq;
  const bbox = viewBBox().map((v) => v.toFixed(5)).join(",");
  const kind = $("kind").value;
  const query = `bbox=${bbox}&zoom=${Math.round(state.zoom)}${kind ? `&kind=${kind}` : ""}`;
  try {
    const body = await api(`/v1/sensors/clusters?${query}`);
    if (seq !== clusterSeq) return; // a newer view asked meanwhile
    state.clusters = body.features;
    state.clustersDirty = false;
    redraw();
  } catch (error) { console.warn(error); }
}

// ------------------------------------------------------------------ drawing
let frame = 0;
function redraw() { if (!frame) frame = requestAnimationFrame(draw); }
const tiles = new Map();
function draw() {
  frame = 0;
  const dpr = devicePixelRatio, w = canvas.width / dpr, h = canvas.height / dpr;
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, w, h);
  if (state.config?.tile_url) drawTiles(w, h);
  let areas = 0;
  for (const area of state.areas) {
    const band = area.properties.band;
    ctx.beginPath();
    let visible = false;
    for (const ring of area.rings) {
      ring.forEach(([lon, lat], i) => {
        const [x, y] = toScreen(lon, lat);
        if (x > -w && x < 2 * w && y > -h && y < 2 * h) visible = true;
        if (i === 0) ctx.moveTo(x, y); else ctx.lineTo(x, y);
      });
      ctx.closePath();
    }
    if (!visible) continue;
    areas += 1;
    ctx.fillStyle = band.key === "no_data" ? "rgba(90,90,90,0.12)" : hexAlpha(band.color, 0.28);
    ctx.fill("evenodd");
    ctx.strokeStyle = area.properties.parent_id ? "rgba(200,215,230,0.45)" : "rgba(230,240,250,0.9)";
    ctx.lineWidth = area.properties.parent_id ? 0.8 : 1.6;
    ctx.stroke();
  }
  let sensors = 0;
  ctx.textAlign = "center"; ctx.textBaseline = "middle";
  for (const cluster of state.clusters) {
    const [lon, lat] = cluster.geometry.coordinates;
    const [x, y] = toScreen(lon, lat);
    const p = cluster.properties;
    const r = p.count === 1 ? 6 : Math.min(26, 9 + Math.log2(p.count) * 3);
    ctx.beginPath(); ctx.arc(x, y, r, 0, 2 * Math.PI);
    ctx.fillStyle = p.band.color; ctx.fill();
    ctx.lineWidth = state.selected === p.sensor_id ? 3 : 1.2;
    ctx.strokeStyle = state.selected === p.sensor_id ? "#ffffff" : "rgba(0,0,0,0.7)";
    ctx.stroke();
    if (p.count > 1) {
      ctx.fillStyle = luminance(p.band.color) > 0.6 ? "#111" : "#fff";
      ctx.font = "bold 11px system-ui, sans-serif";
      ctx.fillText(p.count > 999 ? `${Math.round(p.count / 1000)}k` : String(p.count), x, y);
    }
    sensors += p.count;
  }
  state.drawn = { areas, sensors, clusters: state.clusters.length };
}
function drawTiles(w, h) {
  const z = Math.round(state.zoom), scale = 2 ** (state.zoom - z);
  const size = TILE * scale, n = 2 ** z;
  const x0 = state.cx - w / 2, y0 = state.cy - h / 2;
  for (let tx = Math.floor(x0 / size); tx <= Math.floor((x0 + w) / size); tx++) {
    for (let ty = Math.floor(y0 / size); ty <= Math.floor((y0 + h) / size); ty++) {
      if (ty < 0 || ty >= n) continue;
      const url = state.config.tile_url.replace("{z}", z).replace("{x}", ((tx % n) + n) % n).replace("{y}", ty);
      let img = tiles.get(url);
      if (!img) { img = new Image(); img.onload = redraw; img.src = url; tiles.set(url, img); }
      if (img.complete && img.naturalWidth) ctx.drawImage(img, tx * size - x0, ty * size - y0, size, size);
    }
  }
}
function hexAlpha(hex, alpha) {
  const n = parseInt(hex.slice(1), 16);
  return `rgba(${n >> 16},${(n >> 8) & 255},${n & 255},${alpha})`;
}
function luminance(hex) {
  const n = parseInt(hex.slice(1), 16);
  return (0.299 * (n >> 16) + 0.587 * ((n >> 8) & 255) + 0.114 * (n & 255)) / 255;
}
function resize() {
  const rect = canvas.getBoundingClientRect();
  canvas.width = Math.max(1, rect.width * devicePixelRatio);
  canvas.height = Math.max(1, rect.height * devicePixelRatio);
  viewChanged();
}

// ------------------------------------------------------------------ interaction
let drag = null;
canvas.addEventListener("pointerdown", (e) => {
  drag = { x: e.clientX, y: e.clientY, cx: state.cx, cy: state.cy, moved: false };
  canvas.setPointerCapture(e.pointerId); canvas.classList.add("dragging");
});
canvas.addEventListener("pointermove", (e) => {
  if (drag) {
    const dx = e.clientX - drag.x, dy = e.clientY - drag.y;
    if (Math.abs(dx) + Math.abs(dy) > 3) drag.moved = true;
    state.cx = drag.cx - dx; state.cy = drag.cy - dy; redraw();
  } else hover(e);
});
canvas.addEventListener("pointerup", (e) => {
  canvas.classList.remove("dragging");
  if (drag && !drag.moved) click(e); else if (drag) viewChanged();
  drag = null;
});
canvas.addEventListener("wheel", (e) => {
  e.preventDefault();
  const rect = canvas.getBoundingClientRect();
  zoomAround(e.deltaY < 0 ? 0.5 : -0.5, e.clientX - rect.left, e.clientY - rect.top);
}, { passive: false });
function hit(e) {
  const rect = canvas.getBoundingClientRect();
  const sx = e.clientX - rect.left, sy = e.clientY - rect.top;
  let best = null, bestD = 18;
  for (const c of state.clusters) {
    const [x, y] = toScreen(...c.geometry.coordinates);
    const d = Math.hypot(x - sx, y - sy);
    if (d < bestD) { best = c; bestD = d; }
  }
  return { cluster: best, sx, sy };
}
function hover(e) {
  const { cluster, sx, sy } = hit(e);
  const tip = $("tooltip");
  if (!cluster) { tip.hidden = true; return; }
  const p = cluster.properties;
  const band = p.band[`name_${state.lang}`];
  tip.textContent = p.count === 1 ? `${p.name || p.sensor_id} · ${t(p.kind)} · ${band}`
    : `${p.count} ${t("sensors")} · ${t("worst")}: ${band}`;
  tip.style.left = `${sx + 12}px`; tip.style.top = `${sy + 12}px`; tip.hidden = false;
}
function click(e) {
  const { cluster, sx, sy } = hit(e);
  if (!cluster) return;
  if (cluster.properties.count > 1) { zoomAround(2, sx, sy); return; }
  showSensor(cluster.properties.sensor_id);
}
$("zoom-in").onclick = () => zoomAround(1, canvas.clientWidth / 2, canvas.clientHeight / 2);
$("zoom-out").onclick = () => zoomAround(-1, canvas.clientWidth / 2, canvas.clientHeight / 2);
$("kind").onchange = loadClusters;
$("lang").onclick = () => {
  state.lang = state.lang === "vi" ? "en" : "vi";
  localStorage.setItem("urbanpulse.lang", state.lang);
  applyLanguage();
};

// ------------------------------------------------------------------ sensor detail: 24 h chart
async function showSensor(sensorId) {
  state.selected = sensorId; redraw();
  const feature = await api(`/v1/sensors/${encodeURIComponent(sensorId)}`);
  const p = feature.properties;
  const metric = p.index?.name || null;
  const to = new Date(), from = new Date(to - 24 * 3600 * 1000);
  const query = `from=${from.toISOString()}&to=${to.toISOString()}&bucket=5m&points=200${metric ? `&metric=${metric}` : ""}`;
  const series = await api(`/v1/sensors/${encodeURIComponent(sensorId)}/readings?${query}`);
  const chosen = series.downsampled?.metric || metric;
  $("detail").hidden = false;
  $("detail-title").textContent = p.name || p.sensor_id;
  $("detail-meta").textContent = `${t(p.kind)} · ${p.sensor_id} · ${t("area")}: ${state.areaNames.get(p.area_id) ?? p.area_id ?? "—"} · ${t("last24h")}: ${chosen ?? ""}`;
  const latest = p.latest ? Object.entries(p.latest.values).map(([k, v]) => `${k} ${v}`).join(" · ") : t("no_data");
  $("detail-latest").textContent = latest;
  const points = series.readings.map((r) => [Date.parse(r.ts), r.values[chosen] ?? r.derived[chosen]])
    .filter(([, v]) => typeof v === "number");
  drawChart(points, p.index?.band?.color || "#58a6ff", from.getTime(), to.getTime());
  state.chartPoints = points.length;
}
function drawChart(points, colour, t0, t1) {
  const c = $("chart"), g = c.getContext("2d"), dpr = devicePixelRatio;
  const w = 340, h = 180;
  c.width = w * dpr; c.height = h * dpr; g.setTransform(dpr, 0, 0, dpr, 0, 0);
  g.clearRect(0, 0, w, h);
  const pad = { l: 40, r: 8, t: 8, b: 22 };
  if (!points.length) { g.fillStyle = "#9fb1c3"; g.fillText(t("no_data"), w / 2 - 30, h / 2); return; }
  const values = points.map(([, v]) => v);
  let lo = Math.min(...values), hi = Math.max(...values);
  if (hi === lo) { hi += 1; lo -= 1; }
  const X = (ts) => pad.l + ((ts - t0) / (t1 - t0)) * (w - pad.l - pad.r);
  const Y = (v) => h - pad.b - ((v - lo) / (hi - lo)) * (h - pad.t - pad.b);
  g.strokeStyle = "#2b3a4a"; g.fillStyle = "#9fb1c3"; g.font = "10px system-ui, sans-serif";
  for (let i = 0; i <= 4; i++) {
    const v = lo + ((hi - lo) * i) / 4, y = Y(v);
    g.beginPath(); g.moveTo(pad.l, y); g.lineTo(w - pad.r, y); g.stroke();
    g.fillText(v.toFixed(hi - lo < 10 ? 1 : 0), 2, y + 3);
  }
  for (let i = 0; i <= 4; i++) {
    const ts = t0 + ((t1 - t0) * i) / 4, d = new Date(ts);
    g.fillText(`${String(d.getHours()).padStart(2, "0")}:${String(d.getMinutes()).padStart(2, "0")}`, X(ts) - 12, h - 6);
  }
  g.strokeStyle = colour; g.lineWidth = 1.8; g.beginPath();
  points.forEach(([ts, v], i) => (i ? g.lineTo(X(ts), Y(v)) : g.moveTo(X(ts), Y(v))));
  g.stroke();
}

// ------------------------------------------------------------------ alerts and live feed
const SEVERITY_ORDER = { critical: 0, warning: 1, info: 2 };
const STATE_ORDER = { open: 0, acknowledged: 1, resolved: 2 };
const ALERT_PAGE = 1000, MAX_LOADED_ALERTS = 5000, MAX_KEPT_ALERTS = 8000;
const canAct = () => state.role === "operator" || state.role === "admin";

// The REST shape (message: {vi, en}, location) as the live events' shape (message_vi, _en).
function alertFromApi(a) { return { ...a, message_vi: a.message?.vi, message_en: a.message?.en }; }
// An alert's life only moves forward (open -> acknowledged -> resolved; re-opening counts one
// more trigger), so when the snapshot and the live events cross, the older never wins.
function stage(a) { return (a.trigger_count ?? 1) * 3 + (STATE_ORDER[a.state] ?? 0); }
function mergeAlert(alerts, alert, fresh = false) {
  if (!alert || typeof alert.alert_id !== "string") return;
  const known = alerts.get(alert.alert_id);
  if (known && stage(known) > stage(alert)) return;
  alerts.set(alert.alert_id, { ...known, ...alert, location: alert.location ?? known?.location, _fresh: fresh });
}
// Critical first, then the newest.
const byUrgency = (a, b) => (SEVERITY_ORDER[a.severity] ?? 3) - (SEVERITY_ORDER[b.severity] ?? 3)
  || Date.parse(b.opened_at) - Date.parse(a.opened_at);
// Members of an incident are listed under it, not one row each.
function activeAlerts() {
  return [...state.alertsById.values()].filter((a) => a.state !== "resolved" && !a.incident_id)
    .sort(byUrgency);
}
// An incident's revision counts its lifecycle events: an older one never replaces a newer.
function mergeIncident(incidents, incident) {
  if (!incident || typeof incident.incident_id !== "string") return;
  const known = incidents.get(incident.incident_id);
  if (known && known.revision > incident.revision) return;
  incidents.set(incident.incident_id, { ...known, ...incident });
}
function openIncidents() { return [...state.incidentsById.values()].filter((i) => i.state === "open").sort(byUrgency); }
function incidentText(i) {
  const count = Number(i.active_count).toLocaleString(state.lang === "vi" ? "vi-VN" : "en-US");
  const where = state.areaNames.get(i.area_id) || i.area_name || i.area_id || "";
  const title = state.lang === "vi" ? i.title_vi : i.title_en;
  return `${title}: ${count} ${t("sensors")}${where ? ` ${t("in_area")} ${where}` : ""}`;
}
function incidentRow(i) {
  const li = document.createElement("li");
  li.className = `incident ${i.severity || "warning"} open`;
  li.dataset.incidentId = i.incident_id;
  const message = document.createElement("div");
  message.className = "message";
  message.textContent = `${state.expanded.has(i.incident_id) ? "▾" : "▸"} ${incidentText(i)}`;
  const meta = document.createElement("div");
  meta.className = "meta";
  const severity = document.createElement("b");
  severity.className = "severity"; severity.textContent = t(i.severity);
  const when = document.createElement("time");
  when.dateTime = i.opened_at; when.textContent = age(i.opened_at);
  meta.append(severity, ` · ${i.member_count} ${t("sensors")} · `, when);
  li.append(message, meta);
  const members = state.expanded.get(i.incident_id);
  if (members) {
    const list = document.createElement("ul");
    list.className = "members";
    list.append(...members.alerts.map((a) => alertRow(alertFromApi(a))));
    if (members.total > members.alerts.length) {
      const more = document.createElement("li");
      more.textContent = `${t("more_members")} ${members.total - members.alerts.length}`;
      list.append(more);
    }
    li.append(list);
  }
  return li;
}
async function toggleIncident(incidentId) {
  if (state.expanded.has(incidentId)) state.expanded.delete(incidentId);
  else {
    const body = await api(`/v1/incidents/${encodeURIComponent(incidentId)}?limit=100`);
    mergeIncident(state.incidentsById, body);
    state.expanded.set(incidentId, body.members);
  }
  renderAlerts();
}
function age(ts) {
  const minutes = Math.floor((Date.now() - Date.parse(ts)) / 60000);
  if (!(minutes >= 1)) return t("just_now");
  if (minutes < 60) return `${minutes} ${t("minutes")}`;
  if (minutes < 48 * 60) return `${Math.floor(minutes / 60)} ${t("hours")}`;
  return `${Math.floor(minutes / 1440)} ${t("days")}`;
}
function alertRow(a) {
  const li = document.createElement("li");
  li.className = `${a.severity || "warning"} ${a.state || ""} ${a._fresh ? "fresh" : ""}`;
  li.dataset.alertId = a.alert_id;
  const message = document.createElement("div");
  message.className = "message";
  message.textContent = (state.lang === "vi" ? a.message_vi : a.message_en) || a.message_en || a.rule_id;
  const meta = document.createElement("div");
  meta.className = "meta";
  const severity = document.createElement("b");
  severity.className = "severity"; severity.textContent = t(a.severity);
  const where = [a.sensor_id && `${t("sensor")} ${a.sensor_id}`, a.area_id && (state.areaNames.get(a.area_id) || a.area_id)];
  const when = document.createElement("time");
  when.dateTime = a.opened_at; when.textContent = age(a.opened_at);
  meta.append(severity, ` · ${[t(a.state), ...where].filter(Boolean).join(" · ")} · `, when);
  li.append(message, meta);
  if (canAct()) {
    const actions = document.createElement("div");
    actions.className = "actions";
    if (a.state === "open") actions.append(actionButton("acknowledge"));
    actions.append(actionButton("resolve"));
    li.append(actions);
  }
  a._fresh = false;
  return li;
}
function actionButton(action) {
  const button = document.createElement("button");
  button.dataset.action = action; button.textContent = t(action);
  return button;
}
function renderAlerts() {
  state.alerts = activeAlerts();
  state.incidents = openIncidents();
  for (const id of state.expanded.keys()) if (!state.incidentsById.has(id)) state.expanded.delete(id);
  // One list, most severe first: an incident row among the alerts by its severity and age.
  const rows = [...state.incidents.map((i) => [i, incidentRow]), ...state.alerts.map((a) => [a, alertRow])]
    .sort(([a], [b]) => byUrgency(a, b));
  $("alerts").replaceChildren(...rows.map(([item, row]) => row(item)));
  $("alert-count").textContent = String(rows.length);
  $("no-alerts").hidden = rows.length > 0;
}
let pendingEvents = null, alertLoadSeq = 0;
// The active alerts (open and acknowledged) that belong to no incident, page by page, and the
// open incidents; live events that arrive meanwhile are applied on top, so none is lost
// between the snapshot and the feed.
async function loadActiveAlerts() {
  const seq = ++alertLoadSeq;
  pendingEvents = [];
  try {
    const alerts = new Map(), incidents = new Map();
    for (const alertState of ["open", "acknowledged"]) {
      for (let offset = 0; offset < MAX_LOADED_ALERTS; offset += ALERT_PAGE) {
        const body = await api(`/v1/alerts?state=${alertState}&grouped=false&limit=${ALERT_PAGE}&offset=${offset}`);
        for (const a of body.alerts) mergeAlert(alerts, alertFromApi(a));
        if (offset + ALERT_PAGE >= body.total) break;
      }
    }
    for (const i of (await api(`/v1/incidents?state=open&limit=${ALERT_PAGE}`)).incidents) mergeIncident(incidents, i);
    if (seq !== alertLoadSeq) return; // a newer load started meanwhile: it owns the buffer
    for (const event of pendingEvents) {
      if (event.incident) mergeIncident(incidents, event.incident); else mergeAlert(alerts, event.alert);
    }
    state.alertsById = alerts;
    state.incidentsById = incidents;
    state.alertsLoaded = true;
    renderAlerts();
  } finally {
    if (seq === alertLoadSeq) pendingEvents = null;
  }
}
let incidentReload = null;
function onAlertEvents(events) {
  for (const message of events) {
    pendingEvents?.push(message);
    const { event, alert, incident } = message;
    if (incident) {
      mergeIncident(state.incidentsById, incident);
      // Alerts listed before the storm formed now belong to it: the snapshot says which.
      if (event === "incident_opened" && !incidentReload) {
        incidentReload = setTimeout(() => {
          incidentReload = null;
          loadActiveAlerts().catch((error) => { console.warn(error); state.error = String(error); });
        }, 1000);
      }
    } else mergeAlert(state.alertsById, alert, event === "opened" || event === "reopened");
  }
  if (state.alertsById.size > MAX_KEPT_ALERTS) { // resolved ones are kept only to block stale events
    for (const [id, a] of state.alertsById) if (a.state === "resolved") state.alertsById.delete(id);
  }
  for (const [id, i] of state.incidentsById) if (i.state === "resolved") state.incidentsById.delete(id);
  renderAlerts();
  state.clustersDirty = true;
}
async function act(alertId, action) {
  $("alert-error").hidden = true;
  const path = `/v1/alerts/${encodeURIComponent(alertId)}`;
  const response = await fetch(`${path}/${action}`, {
    method: "POST", headers: { ...keyHeaders(), "Content-Type": "application/json" }, body: "{}",
  });
  const body = await response.json().catch(() => ({}));
  if (response.ok) mergeAlert(state.alertsById, alertFromApi(body));
  else {
    $("alert-error").textContent = body.error?.message || `${action}: ${response.status}`;
    $("alert-error").hidden = false;
    if (response.status === 409) mergeAlert(state.alertsById, alertFromApi(await api(path)));
  }
  renderAlerts();
}
async function flyToAlert(alertId) {
  let alert = state.alertsById.get(alertId);
  if (!alert?.location) { // live events carry no position: the stored alert has it
    mergeAlert(state.alertsById, alertFromApi(await api(`/v1/alerts/${encodeURIComponent(alertId)}`)));
    alert = state.alertsById.get(alertId);
  }
  const coordinates = alert?.location?.coordinates;
  if (coordinates) setView(Math.max(state.zoom, 15), coordinates[0], coordinates[1]);
  if (alert?.sensor_id) await showSensor(alert.sensor_id);
}
$("alerts").addEventListener("click", (e) => {
  const row = e.target.closest("li[data-alert-id]");
  const incident = e.target.closest("li[data-incident-id]");
  if (incident && (!row || !incident.contains(row))) {
    toggleIncident(incident.dataset.incidentId).catch((error) => { console.warn(error); state.error = String(error); });
    return;
  }
  if (!row) return;
  const button = e.target.closest("button[data-action]");
  const done = button ? act(row.dataset.alertId, button.dataset.action) : flyToAlert(row.dataset.alertId);
  done.catch((error) => { console.warn(error); state.error = String(error); });
});
setInterval(renderAlerts, 30000); // ages move on
function connectLive() {
  const proto = location.protocol === "https:" ? "wss" : "ws";
  const key = state.key ? `?key=${encodeURIComponent(state.key)}` : "";
  const ws = new WebSocket(`${proto}://${location.host}/v1/live${key}`);
  setStatus("connecting");
  ws.onopen = () => {
    setStatus("live");
    // Whatever changed while the feed was down comes from the snapshot.
    loadActiveAlerts().catch((error) => { console.warn(error); state.error = String(error); });
  };
  ws.onmessage = (event) => {
    const message = JSON.parse(event.data);
    if (message.type === "alerts") onAlertEvents(message.alerts);
    else if (message.type === "readings") { state.readingsSeen += message.readings.length; state.clustersDirty = true; }
  };
  ws.onclose = (event) => {
    setStatus("offline");
    if (event.code === 4401) askKey();
    setTimeout(connectLive, 2000);
  };
}
function setStatus(s) { state.live = s; $("status").dataset.state = s; $("status").textContent = t(s); }
// New readings change bands: refetch clusters and areas, coalesced to one request per few seconds.
setInterval(() => { if (state.clustersDirty) loadClusters(); }, 3000);
setInterval(() => loadAreas().catch(console.warn), 30000);

// ------------------------------------------------------------------ language and legend
function applyLanguage() {
  document.documentElement.lang = state.lang;
  document.querySelectorAll("[data-i18n]").forEach((el) => { el.textContent = t(el.dataset.i18n); });
  $("lang").textContent = state.lang === "vi" ? "EN" : "VI";
  document.title = `UrbanPulse — ${t("title")}`;
  for (const option of $("kind").options) if (option.value) option.textContent = t(option.value);
  setStatus(state.live);
  renderAlerts(); renderLegend();
}
function renderLegend() {
  // The bands come from the server (/v1/map/config): the same scales that colour the sensors.
  const bands = state.config?.legend || [];
  $("legend-items").replaceChildren(...bands.map((band) => {
    const li = document.createElement("li");
    const dot = document.createElement("i"); dot.style.background = band.color;
    li.append(dot, band[`name_${state.lang}`]); return li;
  }));
}

// ------------------------------------------------------------------ start
// With the key, the config also names its role: it decides which buttons the list shows.
async function loadConfig() { return (await fetch("/v1/map/config", { headers: keyHeaders() })).json(); }
async function start() {
  const params = new URLSearchParams(location.search);
  if (params.get("key")) sessionStorage.setItem("urbanpulse.key", params.get("key"));
  if (params.get("lang") in I18N) state.lang = params.get("lang");
  state.key = sessionStorage.getItem("urbanpulse.key");
  state.config = await loadConfig();
  if (!state.key && !state.config.public_read) { askKey(); state.config = await loadConfig(); }
  state.role = state.config.role;
  for (const kind of state.config.kinds) {
    const option = document.createElement("option"); option.value = kind; $("kind").append(option);
  }
  applyLanguage();
  resize();
  const bbox = params.get("bbox")?.split(",").map(Number);
  fit(bbox?.length === 4 && bbox.every(Number.isFinite) ? bbox : state.config.extent);
  window.addEventListener("resize", resize);
  await loadAreas();
  connectLive();
  state.ready = true;
}
start().catch((error) => { console.error(error); state.error = String(error); });
