// Facility boards: kinds without a colour scale that the alert rules limit (landfills,
// incinerators; the server's /v1/map/config lists them).  Choosing one in the kind selector
// shows its sites on the map as squares coloured by their worst active alert, and a board per
// site in the side panel: each field's latest value against the rule limits on it (from the
// rule file, with its citation), and the site's active alerts.  Nothing here names a kind.

const TEXT = {
  vi: {
    ok: "Trong giới hạn", over_limit: "Vượt giới hạn (chưa cảnh báo)", no_data: "Chưa có dữ liệu", limit: "giới hạn", over: "vượt",
    updated: "cập nhật", board: "Bảng theo dõi", none: "Chưa có điểm quan trắc",
  },
  en: {
    ok: "Within limits", over_limit: "Over a limit (no alert yet)", no_data: "No data yet", limit: "limit", over: "over",
    updated: "updated", board: "Board", none: "No monitoring site yet",
  },
};
// The alert list's colours (map.css), so a site and its alerts read alike.
const STATUS_COLOURS = {
  critical: "#f85149", warning: "#d29922", info: "#58a6ff", over_limit: "#e3b341", ok: "#3fb950",
};
const STATUSES = ["critical", "warning", "info", "over_limit", "ok", "no_data"];
const OPS = { above: ">", at_least: "≥", below: "<", at_most: "≤", not_equal: "≠" };
const MARKER_PX = 9;
const REFRESH_MS = 10000;

export function createBoards(map) {
  const { state, api, $ } = map;
  const bd = { kind: null, fields: [], sites: [], selected: null };
  state.board = bd;
  const text = (k) => TEXT[state.lang][k] ?? map.t(k);
  const active = () => Boolean(state.config?.boards?.includes(state.kind));
  let seq = 0;

  async function load() {
    $("board").hidden = !active();
    if (!active()) { bd.kind = null; bd.sites = []; return; }
    const mine = ++seq;
    try {
      const body = await api(`/v1/boards/${encodeURIComponent(state.kind)}`);
      if (mine !== seq) return;
      Object.assign(bd, { kind: body.kind, fields: body.fields, sites: body.sites });
      render(); map.redraw();
    } catch (error) { console.warn(error); state.error = String(error); }
  }

  function legend() {
    if (!active()) return null;
    return STATUSES.map((status) => ({
      key: status, color: STATUS_COLOURS[status] ?? "#5a5a5a",
      name_vi: TEXT.vi[status] ?? map.tIn("vi", status), name_en: TEXT.en[status] ?? map.tIn("en", status),
    }));
  }

  const fmt = (v) => (typeof v !== "number" ? "—" : Math.abs(v) >= 100 ? v.toFixed(0) : String(+v.toFixed(2)));

  function fieldRow(site, field) {
    const value = site[field.source][field.name];
    if (value == null && !field.limits.length) return null; // nothing to say about it
    const tr = document.createElement("tr");
    tr.dataset.field = field.name;
    const exceeded = site.checks.filter((c) => c.metric === field.name && c.exceeded);
    if (exceeded.length) tr.className = "over";
    const name = document.createElement("td");
    name.textContent = field.name; name.title = field.description;
    const shown = document.createElement("td");
    shown.textContent = `${fmt(value)}${field.unit ? ` ${field.unit}` : ""}`;
    const limits = document.createElement("td");
    limits.textContent = field.limits.map((l) => `${OPS[l.op]} ${fmt(l.value)}`).join(" · ");
    limits.title = field.limits.map((l) => l.citation).join("\n");
    tr.append(name, shown, limits);
    return tr;
  }

  function siteCard(site) {
    const card = document.createElement("article");
    card.className = `site ${site.status}`;
    card.dataset.sensorId = site.sensor_id;
    if (bd.selected === site.sensor_id) card.classList.add("selected");
    const head = document.createElement("h3");
    const chip = document.createElement("b");
    chip.className = "status"; chip.textContent = text(site.status);
    head.append(`${site.name || site.sensor_id} `, chip);
    const meta = document.createElement("p");
    meta.className = "meta";
    const where = state.areaNames.get(site.area_id) || site.area_id || "";
    meta.textContent = [site.sensor_id, where, site.ts && `${text("updated")} ${map.age(site.ts)}`]
      .filter(Boolean).join(" · ");
    const table = document.createElement("table");
    table.append(...bd.fields.map((f) => fieldRow(site, f)).filter(Boolean));
    const alerts = document.createElement("ul");
    alerts.className = "site-alerts";
    alerts.append(...site.alerts.map((a) => {
      const li = document.createElement("li");
      li.className = a.severity; li.dataset.alertId = a.alert_id;
      li.textContent = state.lang === "vi" ? a.message_vi : a.message_en;
      return li;
    }));
    card.append(head, meta, table, alerts);
    card.addEventListener("click", () => select(site.sensor_id, true));
    return card;
  }

  function render() {
    $("board-title").textContent = `${text("board")}: ${map.t(bd.kind)}`;
    const cards = bd.sites.map(siteCard);
    if (!cards.length) {
      const p = document.createElement("p"); p.textContent = text("none"); cards.push(p);
    }
    $("board-sites").replaceChildren(...cards);
  }

  function select(sensorId, fly) {
    bd.selected = sensorId;
    const site = bd.sites.find((s) => s.sensor_id === sensorId);
    if (fly && site?.location) map.setView(Math.max(state.zoom, 15), ...site.location);
    render();
    document.querySelector(`#board-sites [data-sensor-id="${CSS.escape(sensorId)}"]`)?.scrollIntoView({ block: "nearest" });
    map.redraw();
  }

  // Squares (not circles: these are sites read against limits, not on a scale).
  function draw(ctx, toScreen) {
    if (!active()) return;
    ctx.font = "11px system-ui, sans-serif"; ctx.textAlign = "left"; ctx.textBaseline = "middle";
    for (const site of bd.sites) {
      if (!site.location) continue;
      const [x, y] = toScreen(...site.location), s = MARKER_PX;
      ctx.fillStyle = STATUS_COLOURS[site.status] ?? "rgba(11,17,24,0.85)";
      ctx.fillRect(x - s, y - s, 2 * s, 2 * s);
      if (site.status === "no_data") { ctx.fillStyle = map.hatch(); ctx.fillRect(x - s, y - s, 2 * s, 2 * s); }
      ctx.lineWidth = bd.selected === site.sensor_id ? 3 : 1;
      ctx.strokeStyle = bd.selected === site.sensor_id ? "#ffffff" : "rgba(0,0,0,0.8)";
      ctx.strokeRect(x - s, y - s, 2 * s, 2 * s);
      ctx.lineWidth = 3; ctx.strokeStyle = "rgba(11,17,24,0.85)";
      const name = site.name || site.sensor_id;
      ctx.strokeText(name, x + s + 4, y); ctx.fillStyle = "#e6edf3"; ctx.fillText(name, x + s + 4, y);
    }
  }

  // A click on a site's square selects its board; true when it hit one.
  function click(sx, sy) {
    if (!active()) return false;
    const hit = bd.sites.find((site) => {
      if (!site.location) return false;
      const [x, y] = map.toScreen(...site.location);
      return Math.abs(x - sx) <= MARKER_PX + 2 && Math.abs(y - sy) <= MARKER_PX + 2;
    });
    if (hit) select(hit.sensor_id, false);
    return Boolean(hit);
  }

  setInterval(() => { if (active()) load(); }, REFRESH_MS);
  return { load, legend, draw, click, hidesSensors: active, hidesAreas: active, render };
}
