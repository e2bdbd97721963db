// UrbanPulse ops-center map: vanilla JavaScript, no build step, no CDN, no internet needed.
// Areas come from /v1/areas (choropleth), sensors from /v1/sensors/clusters (aggregated in
// PostGIS by zoom level), readings from the /v1/live WebSocket.  The alert list starts from the
// active alerts (GET /v1/alerts) and follows their lifecycle events on /v1/live; an operator's
// key acknowledges and resolves from the list (POST /v1/alerts/{id}/acknowledge | resolve).
//
// One question per colour: the map shows one kind at a time, and both the areas and the sensors
// are coloured on that kind's own scale (VN_AQI, VN_WQI, bin fill, congestion), one
// administrative level at a time.  Readable at city scale: while the view holds many sensors and
// the zoom is low, each area shows one badge (sensors, worst index) instead of clusters; clusters
// sit on their grid cell with a radius that never reaches a neighbour, under the area borders.
// Everything is drawn on one canvas: no DOM node per sensor.
// A storm (many alerts of one rule in one area, GET /v1/incidents) is one row that expands.
// Beside the live view, each in its own module: the time slider (timeline.js), forecasts
// (forecast.js) and the facility boards of kinds without a scale (boards.js).

import { createBoards } from "./boards.js";
import { createForecasts } from "./forecast.js";
import { createTimeline } from "./timeline.js";

const TILE = 256;
const CLUSTER_CELL_PX = 48; // the server's clustering cell at an integer zoom (sensors router)
const BADGE_MAX_ZOOM = 14; // below this zoom a dense view shows one badge per area...
const BADGE_MIN_SENSORS = 200; // ...when it holds more sensors of the kind than this
const I18N = {
  vi: {
    title: "Bản đồ trung tâm điều hành", kind: "Loại", level: "Cấp", legend: "Chú giải",
    alerts: "Cảnh báo", no_alerts: "Chưa có cảnh báo mới", live: "Trực tiếp",
    connecting: "Đang kết nối", offline: "Mất kết nối", sensors: "cảm biến",
    last24h: "24 giờ qua", no_data: "Chưa có dữ liệu", area: "Khu vực", key: "Nhập khóa API:",
    air: "Không khí", water: "Nước", waste_bin: "Thùng rác", waste_truck: "Xe rác",
    traffic_camera: "Camera giao thông", landfill: "Bãi chôn lấp", incinerator: "Lò đốt rác",
    open: "Mở", acknowledged: "Đã xác nhận",
    resolved: "Đã xử lý", worst: "xấu nhất", mean: "trung bình", so_far: "hiện có",
    critical: "Nghiêm trọng", warning: "Cảnh báo", info: "Thông tin",
    acknowledge: "Xác nhận", resolve: "Xử lý xong", sensor: "Cảm biến",
    just_now: "vừa xong", minutes: "phút", hours: "giờ", days: "ngày",
    ward: "Phường/xã", province: "Tỉnh/thành phố", former_district: "Quận/huyện cũ",
    in_area: "tại", more_members: "và còn",
  },
  en: {
    title: "Operations center map", kind: "Kind", level: "Level", legend: "Legend",
    alerts: "Alerts", no_alerts: "No new alerts yet", live: "Live",
    connecting: "Connecting", offline: "Offline", sensors: "sensors",
    last24h: "Last 24 hours", no_data: "No data yet", area: "Area", key: "Enter an API key:",
    air: "Air", water: "Water", waste_bin: "Waste bin", waste_truck: "Waste truck",
    traffic_camera: "Traffic camera", landfill: "Landfill", incinerator: "Incinerator",
    open: "Open", acknowledged: "Acknowledged",
    resolved: "Resolved", worst: "worst", mean: "mean", so_far: "so far",
    critical: "Critical", warning: "Warning", info: "Info",
    acknowledge: "Acknowledge", resolve: "Resolve", sensor: "Sensor",
    just_now: "just now", minutes: "min", hours: "h", days: "d",
    ward: "Ward/commune", province: "Province/city", former_district: "Former district",
    in_area: "in", more_members: "and more:",
  },
};

const state = {
  lang: localStorage.getItem("urbanpulse.lang") || "vi",
  key: null, config: null,
  kind: "air", level: "ward", // the one question the colours answer, and where
  zoom: 12, cx: 0, cy: 0, // view centre in world pixels at `zoom`
  areas: [], areaNames: new Map(), clusters: [], clusterZoom: 12, viewSensors: 0,
  alertsById: new Map(), alerts: [], alertsLoaded: false, role: null,
  incidentsById: new Map(), incidents: [], expanded: new Map(), // incident id -> members or null
  drawn: { areas: 0, sensors: 0, clusters: 0, badges: 0, mode: "clusters" },
  live: "connecting", readingsSeen: 0, clustersDirty: false, selected: null,
  frameTimes: [], // ms per drawn frame, for the browser test's report
};
window.urbanpulse = state; // read by the browser test and handy in the console

const $ = (id) => document.getElementById(id);
const canvas = $("map");
const ctx = canvas.getContext("2d");
const t = (k) => (I18N[state.lang][k] ?? k);
const scaleOf = (kind) => state.config?.scales.find((s) => s.kind === kind);

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
  state.areasLoadedAt = Date.now();
  layoutChanged();
}
function polygonRings(geometry) {
  if (!geometry) return [];
  if (geometry.type === "Polygon") return geometry.coordinates;
  if (geometry.type === "MultiPolygon") return geometry.coordinates.flat();
  return [];
}
const shownAreas = () => state.areas.filter((a) => a.properties.level === state.level);
let clusterTimer = null, clusterSeq = 0;
function viewChanged() {
  layoutChanged();
  clearTimeout(clusterTimer);
  clusterTimer = setTimeout(loadClusters, 150);
}
async function loadClusters() {
  const seq = ++clusterSeq;
  const bbox = viewBBox().map((v) => v.toFixed(5)).join(",");
  const zoom = Math.round(state.zoom);
  try {
    const kind = state.kind;
    const body = await api(`/v1/sensors/clusters?bbox=${bbox}&zoom=${zoom}&kind=${kind}`);
    if (seq !== clusterSeq) return; // a newer view asked meanwhile
    state.clusters = body.features;
    state.clusterKind = kind;
    state.clusterZoom = zoom;
    state.viewSensors = body.sensors;
    state.clustersDirty = false;
    layoutChanged();
  } catch (error) { console.warn(error); }
}

// ------------------------------------------------------------------ layout: nothing overlaps
// Circles are laid out in world pixels at the current zoom, so panning reuses the layout and
// only a zoom or new data lays them out again.  Each circle asks for a radius; every pair that
// would touch shares the distance between them in proportion to what each asked for, so no two
// circles ever overlap, whatever the data.
function badgeMode() {
  return state.zoom < BADGE_MAX_ZOOM && state.viewSensors > BADGE_MIN_SENSORS;
}
function separate(items) {
  const reach = 2 * Math.max(1, ...items.map((i) => i.want));
  const grid = new Map(), cell = (v) => Math.floor(v / reach);
  for (const item of items) {
    const key = `${cell(item.x)},${cell(item.y)}`;
    if (!grid.has(key)) grid.set(key, []);
    grid.get(key).push(item);
  }
  for (const a of items) {
    a.r = a.want;
    for (let gx = cell(a.x) - 1; gx <= cell(a.x) + 1; gx++) {
      for (let gy = cell(a.y) - 1; gy <= cell(a.y) + 1; gy++) {
        for (const b of grid.get(`${gx},${gy}`) || []) {
          if (a === b) continue;
          const room = Math.hypot(a.x - b.x, a.y - b.y) - 1; // keep a pixel between them
          if (room < a.want + b.want) a.r = Math.min(a.r, Math.max(0, (room * a.want) / (a.want + b.want)));
        }
      }
    }
  }
  return items;
}
function clusterItems() {
  // The server's cells are CLUSTER_CELL_PX wide at clusterZoom; at a fractional zoom around it
  // they are at least 48 / sqrt(2) = 34 px apart, and a cluster's radius stays well inside.
  const spacing = CLUSTER_CELL_PX * 2 ** (state.zoom - state.clusterZoom);
  const most = Math.min(18, 0.42 * spacing);
  return state.clusters.map((feature) => {
    const p = feature.properties;
    const [lon, lat] = p.count > 1 && p.cell ? p.cell : feature.geometry.coordinates;
    const [x, y] = project(lon, lat, state.zoom);
    const want = p.count === 1 ? 5 : Math.min(most, 8 + Math.log2(p.count) * 2.5);
    return { x, y, want, feature, count: p.count, band: p.band };
  });
}
function badgeItems() {
  const items = [];
  for (const area of shownAreas()) {
    const point = area.properties.label_point?.coordinates;
    const summary = area.properties.summary[state.kind];
    if (!point || !summary?.sensors) continue;
    const [x, y] = project(point[0], point[1], state.zoom);
    const scale = scaleOf(state.kind);
    const worst = summary[`${scale.field}_worst`];
    items.push({ x, y, want: 17, area, count: summary.sensors, worst, mean: summary[`${scale.field}_mean`],
      band: area.properties.bands[state.kind] });
  }
  return items;
}
function layoutChanged() {
  state.layout = null;
  redraw();
}
function layout() {
  if (addons.some((addon) => addon.hidesSensors())) return { zoom: state.zoom, mode: "hidden", items: [] };
  if (!state.layout || state.layout.zoom !== state.zoom) {
    const mode = badgeMode() ? "badges" : "clusters";
    state.layout = { zoom: state.zoom, mode, items: separate(mode === "badges" ? badgeItems() : clusterItems()) };
  }
  return state.layout;
}

// ------------------------------------------------------------------ drawing
let frame = 0;
function redraw() { if (!frame) frame = requestAnimationFrame(draw); }
const tiles = new Map();
let noDataPattern = null;
function hatch() {
  // "No data" is no colour of any scale: a grey hatch, the same in the legend.
  if (!noDataPattern) {
    const tile = document.createElement("canvas");
    tile.width = tile.height = 8;
    const g = tile.getContext("2d");
    g.strokeStyle = "rgba(150,160,170,0.45)"; g.lineWidth = 1.5;
    g.beginPath(); g.moveTo(0, 8); g.lineTo(8, 0); g.stroke();
    noDataPattern = ctx.createPattern(tile, "repeat");
  }
  return noDataPattern;
}
function draw() {
  frame = 0;
  const started = performance.now();
  const dpr = devicePixelRatio, w = canvas.width / dpr, h = canvas.height / dpr;
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, w, h);
  if (state.config?.tile_url) drawTiles(w, h);
  const areas = shownAreas().map((area) => ({ area, path: areaPath(area, w, h) })).filter((a) => a.path);
  for (const { area, path } of areas) {
    const band = areaBand(area);
    if (band?.key === "none") continue;
    ctx.fillStyle = !band || band.key === "no_data" ? hatch() : hexAlpha(band.color, 0.3);
    ctx.fill(path, "evenodd");
  }
  const { mode, items } = layout();
  const ox = state.cx - w / 2, oy = state.cy - h / 2;
  const visible = items.filter((i) => i.x - ox > -i.r && i.x - ox < w + i.r && i.y - oy > -i.r && i.y - oy < h + i.r);
  for (const item of visible) drawCircle(item, item.x - ox, item.y - oy, mode);
  // Borders above the circles: a cluster never hides where one area ends.
  for (const { area, path } of areas) {
    ctx.strokeStyle = area.properties.area_id === state.hoverArea ? "#ffffff" : "rgba(220,232,245,0.75)";
    ctx.lineWidth = area.properties.area_id === state.hoverArea ? 2 : 1;
    ctx.stroke(path);
  }
  ctx.textAlign = "center"; ctx.textBaseline = "middle";
  for (const item of visible) drawLabel(item, item.x - ox, item.y - oy, mode);
  timeline.draw(ctx, toScreen);
  forecasts.draw(ctx, visible, ox, oy);
  boards.draw(ctx, toScreen);
  state.drawn = {
    areas: areas.length, mode,
    sensors: visible.reduce((n, i) => n + i.count, 0),
    clusters: mode === "clusters" ? visible.length : 0,
    badges: mode === "badges" ? visible.length : 0,
  };
  state.frameTimes.push(performance.now() - started);
  if (state.frameTimes.length > 500) state.frameTimes.shift();
}
// The band an area is filled with: the time slider's hour, else the live one; none on a board.
function areaBand(area) {
  if (boards.hidesAreas()) return { key: "none" };
  return timeline.areaBand(area) ?? area.properties.bands?.[state.kind];
}
function areaPath(area, w, h) {
  const path = new Path2D();
  let visible = false;
  for (const ring of area.rings) {
    ring.forEach(([lon, lat], i) => {
      const [x, y] = toScreen(lon, lat);
      if (x > -w && x < 2 * w && y > -h && y < 2 * h) visible = true;
      if (i === 0) path.moveTo(x, y); else path.lineTo(x, y);
    });
    path.closePath();
  }
  return visible ? path : null;
}
function drawCircle(item, x, y, mode) {
  if (item.r < 0.5) return;
  const selected = mode === "clusters" && state.selected && state.selected === item.feature.properties.sensor_id;
  ctx.beginPath(); ctx.arc(x, y, item.r, 0, 2 * Math.PI);
  const noData = item.band.key === "no_data";
  ctx.fillStyle = noData ? "rgba(11,17,24,0.85)" : hexAlpha(item.band.color, mode === "badges" ? 0.9 : 0.72);
  ctx.fill();
  if (noData) { ctx.fillStyle = hatch(); ctx.fill(); } // as in the legend
  ctx.lineWidth = selected ? 3 : 1;
  ctx.strokeStyle = selected ? "#ffffff" : noData ? "rgba(160,170,180,0.8)" : "rgba(0,0,0,0.75)";
  ctx.stroke();
}
function drawLabel(item, x, y, mode) {
  const ink = item.band.key === "no_data" || luminance(item.band.color) <= 0.6 ? "#fff" : "#111";
  ctx.fillStyle = ink;
  if (mode === "badges") {
    if (item.r < 9) return;
    const worst = item.worst == null ? "—" : String(Math.round(item.worst));
    ctx.font = "bold 11px system-ui, sans-serif";
    if (item.r < 14) { ctx.fillText(worst, x, y); return; }
    ctx.fillText(worst, x, y - 5);
    ctx.font = "9px system-ui, sans-serif";
    ctx.fillText(short(item.count), x, y + 6);
  } else if (item.count > 1 && item.r >= 8) {
    ctx.font = "bold 10px system-ui, sans-serif";
    ctx.fillText(short(item.count), x, y);
  }
}
const short = (n) => (n > 999 ? `${(n / 1000).toFixed(n < 9500 ? 1 : 0)}k` : String(n));
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
// For the browser test: what is drawn, in CSS pixels of the canvas.
window.__urbanpulse_debug = {
  circles() {
    const w = canvas.width / devicePixelRatio, h = canvas.height / devicePixelRatio;
    const { mode, items } = layout();
    return items.map((i) => ({
      x: i.x - state.cx + w / 2, y: i.y - state.cy + h / 2, r: i.r, count: i.count, mode,
      band: i.band.key, sensor_id: i.feature?.properties.sensor_id ?? null, area_id: i.area?.properties.area_id ?? null,
    }));
  },
  areaColour: (areaId) => state.areas.find((a) => a.properties.area_id === areaId)?.properties.bands[state.kind],
  // The band drawn now: the slider's hour, or live.
  areaShown: (areaId) => {
    const area = state.areas.find((a) => a.properties.area_id === areaId);
    return area ? areaBand(area)?.key : undefined;
  },
};

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
  const ox = state.cx - rect.width / 2, oy = state.cy - rect.height / 2;
  let item = null, bestD = Infinity;
  for (const i of layout().items) {
    const d = Math.hypot(i.x - ox - sx, i.y - oy - sy);
    if (d <= Math.max(i.r, 8) && d < bestD) { item = i; bestD = d; }
  }
  return { item, sx, sy };
}
function bandName(band) { return band[`name_${state.lang}`]; }
function hover(e) {
  const { item, sx, sy } = hit(e);
  const tip = $("tooltip");
  if (!item) { tip.hidden = true; return; }
  const scale = scaleOf(state.kind);
  if (item.area) {
    const p = item.area.properties, s = p.summary[state.kind];
    const mean = s[`${scale.field}_mean`];
    tip.textContent = `${p.name} · ${s.sensors} ${t("sensors")} · ${t("worst")} ${scale.field} ${item.worst ?? "—"}`
      + ` (${bandName(item.band)})${mean == null ? "" : ` · ${t("mean")} ${mean}`}`;
  } else {
    const p = item.feature.properties;
    if (p.count > 1) tip.textContent = `${p.count} ${t("sensors")} · ${t("worst")}: ${bandName(p.band)}`;
    else {
      const why = p.band.key === "no_index" ? ` · ${scale[`needs_${state.lang}`]}` : "";
      tip.textContent = `${p.name || p.sensor_id} · ${t(p.kind)} · ${bandName(p.band)}${why}`;
    }
  }
  tip.style.left = `${sx + 12}px`; tip.style.top = `${sy + 12}px`; tip.hidden = false;
}
function click(e) {
  const { item, sx, sy } = hit(e);
  if (boards.click(sx, sy)) return;
  if (!item) return;
  if (item.area) { fitArea(item.area); return; }
  if (item.count > 1) { zoomAround(2, sx, sy); return; }
  showSensor(item.feature.properties.sensor_id);
}
function fitArea(area) {
  const points = area.rings.flat();
  const lons = points.map((p) => p[0]), lats = points.map((p) => p[1]);
  fit([Math.min(...lons), Math.min(...lats), Math.max(...lons), Math.max(...lats)]);
}
$("zoom-in").onclick = () => zoomAround(1, canvas.clientWidth / 2, canvas.clientHeight / 2);
$("zoom-out").onclick = () => zoomAround(-1, canvas.clientWidth / 2, canvas.clientHeight / 2);
$("kind").onchange = () => {
  state.kind = $("kind").value;
  state.clusters = []; // the view's sensor count stays: the mode holds until new clusters come
  renderLegend(); layoutChanged(); loadClusters();
  addonsReload();
};
$("level").onchange = () => { state.level = $("level").value; layoutChanged(); timeline.reload(); };
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
  const metric = (scaleOf(p.kind)?.history && p.index?.name) || null; // else the kind's default
  const to = new Date(), from = new Date(to - 24 * 3600 * 1000);
  const query = `from=${from.toISOString()}&to=${to.toISOString()}&bucket=5m&points=200${metric ? `&metric=${metric}` : ""}`;
  const series = await api(`/v1/sensors/${encodeURIComponent(sensorId)}/readings?${query}`);
  const chosen = series.downsampled?.metric || metric;
  $("detail").hidden = false;
  $("detail-title").textContent = p.name || p.sensor_id;
  $("detail-meta").textContent = `${t(p.kind)} · ${p.sensor_id} · ${t("area")}: ${state.areaNames.get(p.area_id) ?? p.area_id ?? "—"} · ${t("last24h")}: ${chosen ?? ""}`;
  const latest = p.latest ? Object.entries(p.latest.values).map(([k, v]) => `${k} ${v}`).join(" · ") : t("no_data");
  $("detail-latest").textContent = latest;
  $("detail-why").textContent = p.latest && !p.index ? await whyNoIndex(p) : "";
  $("detail-why").hidden = !$("detail-why").textContent;
  const points = series.readings.map((r) => [Date.parse(r.ts), r.values[chosen] ?? r.derived[chosen]])
    .filter(([, v]) => typeof v === "number");
  drawChart(points, p.index?.band?.color || "#58a6ff", from.getTime(), to.getTime());
  state.chartPoints = points.length;
  await forecasts.showFor(p);
}
// Why a reporting sensor has no index yet, in the scale's own terms.  For air, the NowCast
// (Decision 1459/QĐ-TCMT) needs PM means in 2 of the current and previous 2 clock hours.
async function whyNoIndex(p) {
  const scale = scaleOf(p.kind);
  if (!scale) return "";
  const needs = scale[`needs_${state.lang}`];
  if (p.kind !== "air") return needs;
  const hour = 3600 * 1000, now = Date.now(), from = new Date(Math.floor(now / hour) * hour - 2 * hour);
  const query = `from=${from.toISOString()}&to=${new Date(now + 1000).toISOString()}&bucket=1h`;
  const series = await api(`/v1/sensors/${encodeURIComponent(p.sensor_id)}/readings?${query}`);
  const hours = series.readings.filter((r) => r.values.pm25 != null || r.values.pm10 != null).length;
  return `${needs}: ${hours} ${t("so_far")}`;
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
  li.className = `${i.severity || "warning"} incident open`; // severity first, as alert rows
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
// No key in the WebSocket's URL (servers and proxies log URLs): a single-use ticket, asked for
// with the key in a header, goes in the first message.
async function liveTicket() {
  if (!state.key || state.config.public_read) return null;
  return (await api("/v1/live/tickets", { method: "POST" })).ticket;
}
function connectLive() {
  liveTicket().then(openLive, (error) => {
    console.warn(error); setStatus("offline"); setTimeout(connectLive, 2000);
  });
}
function openLive(ticket) {
  const proto = location.protocol === "https:" ? "wss" : "ws";
  const ws = new WebSocket(`${proto}://${location.host}/v1/live`);
  setStatus("connecting");
  ws.onopen = () => {
    if (ticket) ws.send(JSON.stringify({ type: "auth", ticket }));
    // Whatever changed while the feed was down comes from the snapshot.
    loadActiveAlerts().catch((error) => { console.warn(error); state.error = String(error); });
  };
  ws.onmessage = (event) => {
    const message = JSON.parse(event.data);
    if (message.type === "subscribed") setStatus("live"); // authenticated: the feed is on
    else if (message.type === "alerts") onAlertEvents(message.alerts);
    else if (message.type === "readings") { state.readingsSeen += message.readings.length; state.clustersDirty = true; }
  };
  ws.onclose = (event) => {
    setStatus("offline");
    if (event.code === 4401) askKey();
    setTimeout(connectLive, 2000);
  };
}
function setStatus(s) { state.live = s; $("status").dataset.state = s; $("status").textContent = t(s); }
// New readings change bands: refetch clusters (every few seconds) and areas (every 10 s at most).
setInterval(() => {
  if (!state.clustersDirty) return;
  loadClusters();
  if (Date.now() - state.areasLoadedAt > 10000) loadAreas().catch(console.warn);
}, 3000);
setInterval(() => loadAreas().catch(console.warn), 30000);


// ------------------------------------------------------------------ language and legend
function applyLanguage() {
  document.documentElement.lang = state.lang;
  document.querySelectorAll("[data-i18n]").forEach((el) => { el.textContent = t(el.dataset.i18n); });
  $("lang").textContent = state.lang === "vi" ? "EN" : "VI";
  document.title = `UrbanPulse — ${t("title")}`;
  for (const option of [...$("kind").options, ...$("level").options]) option.textContent = t(option.value);
  setStatus(state.live);
  renderAlerts(); renderLegend();
  timeline.applyLanguage();
  if (state.board.kind) boards.render();
}
function renderLegend() {
  // The selected kind's scale only (from the server, /v1/map/config), then "no data" (an area
  // or sensor without a recent reading) and "no index" (a sensor reporting without an index).
  const bands = scaleOf(state.kind)?.legend || boards.legend() || [];
  $("legend-items").replaceChildren(...bands.map((band) => {
    const li = document.createElement("li");
    li.dataset.band = band.key;
    const dot = document.createElement("i");
    if (band.key === "no_data") dot.className = "no-data"; else dot.style.background = band.color;
    li.append(dot, band[`name_${state.lang}`]); return li;
  }));
}

// ------------------------------------------------------------------ add-ons
// What the add-on modules may use of the map; each keeps its own state under `state`.
const mapApi = {
  state, api, $, t, tIn: (lang, k) => I18N[lang][k] ?? k, scaleOf, redraw, layoutChanged,
  toScreen, setView, shownAreas, hatch, age,
};
const timeline = createTimeline(mapApi);
const forecasts = createForecasts(mapApi);
const boards = createBoards(mapApi);
const addons = [timeline, boards];
function addonsReload() {
  for (const load of [timeline.reload, boards.load, forecasts.loadBins]) {
    load().catch((error) => { console.warn(error); state.error = String(error); });
  }
}

// ------------------------------------------------------------------ start
// With the key, the config also names its role: it decides which buttons the list shows.
async function loadConfig() { return (await fetch("/v1/map/config", { headers: keyHeaders() })).json(); }
function options(select, values, chosen) {
  select.replaceChildren(...values.map((value) => {
    const option = document.createElement("option"); option.value = value; return option;
  }));
  select.value = values.includes(chosen) ? chosen : values[0];
  return select.value;
}
// A key given in the address comes after "#" (never sent to the server): #key=up_...  It is
// kept for this tab only and taken out of the address bar and history at once.  A key in the
// query string (?key=, sent to the server) is not used, and is taken out too.
function takeKeyFromAddress(params) {
  const fragment = new URLSearchParams(location.hash.slice(1));
  const key = fragment.get("key");
  if (key) sessionStorage.setItem("urbanpulse.key", key.trim());
  if (!key && !params.has("key")) return;
  if (params.has("key")) console.warn("an API key in the query string is ignored: use #key=");
  fragment.delete("key"); params.delete("key");
  const query = params.toString(), hash = fragment.toString();
  history.replaceState(null, "", `${location.pathname}${query ? `?${query}` : ""}${hash ? `#${hash}` : ""}`);
}
async function start() {
  const params = new URLSearchParams(location.search);
  takeKeyFromAddress(params);
  if (params.get("lang") in I18N) state.lang = params.get("lang");
  state.key = sessionStorage.getItem("urbanpulse.key");
  state.config = await loadConfig();
  if (!state.key && !state.config.public_read) { askKey(); state.config = await loadConfig(); }
  state.role = state.config.role;
  const kinds = [...state.config.scales.map((s) => s.kind), ...(state.config.boards || [])];
  state.kind = options($("kind"), kinds, params.get("kind") || "air");
  const levels = state.config.levels.length ? state.config.levels : ["ward"];
  state.level = options($("level"), levels, params.get("level") || "ward");
  applyLanguage();
  resize();
  // Home: the configured city (api.map_bbox), else the sensors' extent (server side).
  const bbox = params.get("bbox")?.split(",").map(Number);
  fit(bbox?.length === 4 && bbox.every(Number.isFinite) ? bbox : state.config.extent);
  window.addEventListener("resize", resize);
  await loadAreas();
  addonsReload();
  connectLive();
  state.ready = true;
}
start().catch((error) => { console.error(error); state.error = String(error); });
