// Forecasts on the map (computed and stored by `urbanpulse forecast run`, read from
// /v1/forecasts/*):
// - an air station's detail shows its next 24 hours as a strip of VN_AQI bands (the median,
//   coloured on the map's own scale) and the PM2.5 band at a few horizons, with the method that
//   served each (the model, or persistence where the model had no skill);
// - on the waste-bin layer each bin is labelled with the hours until it reaches 90 %, and its
//   detail says when.

const TEXT = {
  vi: {
    forecast: "Dự báo", reaches_90: "Đạt 90 % sau", at: "lúc", already_90: "Đã đạt 90 %",
    not_filling: "Không tăng", model: "mô hình", persistence: "giữ nguyên",
  },
  en: {
    forecast: "Forecast", reaches_90: "Reaches 90 % in", at: "at", already_90: "Already at 90 %",
    not_filling: "Not filling", model: "model", persistence: "persistence",
  },
};
const SHOWN_HORIZONS = [1, 3, 6, 12, 24];
const BINS_REFRESH_MS = 60000;

export function createForecasts(map) {
  const { state, api, $ } = map;
  const fc = { bins: new Map(), air: null, shownFor: null };
  state.forecasts = fc;
  const text = (k) => TEXT[state.lang][k] ?? k;

  // Every bin's forecast (the waste layer's labels); `always`: whatever the layer shown.
  async function loadBins(always = false) {
    if (!always && state.kind !== "waste_bin") return;
    try {
      const body = await api("/v1/forecasts/bins");
      fc.bins = new Map(body.bins.map((b) => [b.sensor_id, b]));
      map.redraw();
    } catch (error) { console.warn(error); }
  }

  const hoursText = (h) => (h < 1 ? "<1 h" : h < 48 ? `${Math.round(h)} h` : `${Math.round(h / 24)} d`);

  // Hours to 90 % beside each single bin drawn (clusters keep their count).
  function draw(ctx, items, ox, oy) {
    if (state.kind !== "waste_bin" || !fc.bins.size) return;
    ctx.font = "bold 10px system-ui, sans-serif";
    ctx.textAlign = "left"; ctx.textBaseline = "middle";
    for (const item of items) {
      const id = item.count === 1 ? item.feature?.properties.sensor_id : null;
      const bin = id && fc.bins.get(id);
      if (!bin || bin.hours_to_90 == null) continue;
      const x = item.x - ox + item.r + 3, y = item.y - oy;
      const words = bin.hours_to_90 <= 0 ? "≥90%" : hoursText(bin.hours_to_90);
      ctx.lineWidth = 3; ctx.strokeStyle = "rgba(11,17,24,0.9)"; ctx.strokeText(words, x, y);
      ctx.fillStyle = "#ffd866"; ctx.fillText(words, x, y);
    }
  }

  function bandColour(key) {
    return map.scaleOf("air")?.legend.find((band) => band.key === key);
  }

  function airRows(body) {
    const strip = document.createElement("div");
    strip.className = "forecast-strip";
    for (const h of body.horizons) {
      const cell = document.createElement("span");
      const median = h.vn_aqi.median;
      const band = median && bandColour(median.band);
      cell.style.background = band ? band.color : "transparent";
      cell.dataset.horizon = String(h.horizon_h);
      cell.dataset.band = median?.band ?? "no_data";
      cell.title = `+${h.horizon_h} h: VN_AQI ${median?.value ?? "—"}`;
      strip.append(cell);
    }
    const list = document.createElement("ul");
    for (const h of body.horizons.filter((x) => SHOWN_HORIZONS.includes(x.horizon_h))) {
      const li = document.createElement("li");
      li.dataset.horizon = String(h.horizon_h);
      const median = h.vn_aqi.median, band = median && bandColour(median.band);
      const pm = h.pm25;
      const range = pm.lower == null ? "" : ` (${pm.lower.toFixed(0)}–${pm.upper.toFixed(0)})`;
      li.textContent = `+${h.horizon_h} h · VN_AQI ${median?.value ?? "—"}`
        + `${band ? ` ${band[`name_${state.lang}`]}` : ""} · PM2.5 ${pm.median?.toFixed(1) ?? "—"}${range} µg/m³`
        + ` · ${text(h.method)}`;
      list.append(li);
    }
    return [strip, list];
  }

  function binRows(sensorId) {
    const bin = fc.bins.get(sensorId);
    if (!bin) return null;
    const li = document.createElement("p");
    li.className = "bin-forecast";
    if (bin.hours_to_90 == null) li.textContent = text("not_filling");
    else if (bin.hours_to_90 <= 0) li.textContent = text("already_90");
    else {
      const at = new Date(bin.full_at);
      const clock = `${String(at.getHours()).padStart(2, "0")}:${String(at.getMinutes()).padStart(2, "0")}`;
      li.textContent = `${text("reaches_90")} ${hoursText(bin.hours_to_90)} (${text("at")} ${clock})`;
    }
    return [li];
  }

  // The selected sensor's forecast under its chart, if one is stored.
  async function showFor(sensor) {
    const box = $("detail-forecast");
    fc.shownFor = sensor.sensor_id; fc.air = null;
    box.hidden = true;
    let rows = null;
    try {
      if (sensor.kind === "air") {
        fc.air = await api(`/v1/forecasts/air?sensor=${encodeURIComponent(sensor.sensor_id)}`);
        rows = airRows(fc.air);
      } else if (sensor.kind === "waste_bin") {
        if (!fc.bins.has(sensor.sensor_id)) await loadBins(true);
        rows = binRows(sensor.sensor_id);
      }
    } catch (error) { console.warn(error); } // no forecast stored yet: nothing to show
    if (fc.shownFor !== sensor.sensor_id || !rows) return;
    const title = document.createElement("h3");
    title.textContent = text("forecast");
    box.replaceChildren(title, ...rows);
    box.hidden = false;
  }

  setInterval(() => loadBins(), BINS_REFRESH_MS);
  return { loadBins, draw, showFor };
}
