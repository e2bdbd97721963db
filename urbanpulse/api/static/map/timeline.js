// The time slider: replays each area's index hour by hour (GET /v1/areas/history), the last
// 24 hours or 7 days, so an operator sees an episode spread and clear, then runs on into the
// next 24 hours of the stored ward forecasts where the kind has one (VN_AQI).  One position is
// "live" (the map as it is now); any other colours the areas with that hour's worst sensor (or
// forecast median) on the same scale and bands as the live map (the server sends the kind's
// legend), writes the value in each area, and hides the live sensor circles, which belong to
// the present.

const TEXT = {
  vi: { live: "Trực tiếp", play: "Phát lại", h24: "24 giờ", d7: "7 ngày", forecast: "dự báo" },
  en: { live: "Live", play: "Replay", h24: "24 hours", d7: "7 days", forecast: "forecast" },
};
const PLAY_STEP_MS = 700;
const REFRESH_MS = 60000;
const AHEAD_H = 24;

export function createTimeline(map) {
  const { state, api, $ } = map;
  // frames: the past hours, oldest first; forecast: the coming hours; index: a position on the
  // slider (0 .. frames.length - 1 the past, frames.length + 1 .. the forecast) or null: live.
  const tl = { hours: 24, frames: [], forecast: [], index: null, legend: new Map(), loaded: null, error: null };
  state.timeline = tl;
  const text = (k) => TEXT[state.lang][k] ?? k;
  const slider = $("tl-slider"), label = $("tl-label"), play = $("tl-play"), range = $("tl-range");
  let seq = 0, player = null;

  const supported = () => Boolean(map.scaleOf(state.kind));
  const atLive = () => tl.index === null;
  const livePosition = () => tl.frames.length;
  const frameAt = (i) => (i < livePosition() ? tl.frames[i] : tl.forecast[i - livePosition() - 1]);

  async function reload() {
    $("timeline").hidden = !supported();
    if (!supported()) { show(null); return; }
    const mine = ++seq;
    const query = `kind=${encodeURIComponent(state.kind)}&level=${encodeURIComponent(state.level)}`
      + `&hours=${tl.hours}&ahead=${AHEAD_H}`;
    try {
      const body = await api(`/v1/areas/history?${query}`);
      if (mine !== seq) return;
      const fromLive = atLive() ? 0 : tl.index - livePosition();
      tl.frames = body.frames;
      tl.forecast = body.forecast;
      tl.legend = new Map(body.legend.map((band) => [band.key, band]));
      tl.loaded = `${body.kind}/${body.level}/${tl.hours}`;
      tl.error = null;
      slider.max = String(tl.frames.length + tl.forecast.length);
      show(Math.max(0, Math.min(Number(slider.max), livePosition() + fromLive)));
    } catch (error) {
      tl.error = String(error); console.warn(error);
    }
  }

  // index: a slider position, or null for live.
  function show(index) {
    tl.index = index === null || index === livePosition() ? null : index;
    slider.value = String(tl.index ?? livePosition());
    renderLabel();
    map.layoutChanged(); // the sensor circles come and go with the live position
  }

  function renderLabel() {
    if (atLive()) { label.textContent = text("live"); label.dataset.state = "live"; return; }
    const ts = new Date(frameAt(tl.index).ts);
    const hours = Math.round((ts.getTime() - Date.now()) / 3600000);
    const day = `${String(ts.getDate()).padStart(2, "0")}/${String(ts.getMonth() + 1).padStart(2, "0")}`;
    const hour = `${String(ts.getHours()).padStart(2, "0")}:00`;
    const future = tl.index > livePosition();
    label.textContent = future ? `${day} ${hour} (+${hours} h, ${text("forecast")})` : `${day} ${hour} (−${-hours} h)`;
    label.dataset.state = future ? "forecast" : "history";
  }

  function togglePlay() {
    if (player) { stopPlay(); return; }
    if (!tl.frames.length) return;
    if (atLive()) show(0);
    play.textContent = "⏸";
    player = setInterval(() => {
      const next = (tl.index ?? livePosition()) + 1;
      if (next > Number(slider.max)) stopPlay(); else show(next);
    }, PLAY_STEP_MS);
  }
  function stopPlay() { clearInterval(player); player = null; play.textContent = "▶"; }

  // The band an area is filled with at the slider's hour; undefined at the live position.
  function areaBand(area) {
    if (atLive()) return undefined;
    const cell = frameAt(tl.index)?.areas[area.properties.area_id];
    return tl.legend.get(cell ? cell.band : "no_data") ?? { key: "no_data" };
  }

  // Each area's value at the slider's hour, written at its label point.
  function draw(ctx, toScreen) {
    if (atLive()) return;
    const frame = frameAt(tl.index);
    ctx.font = "bold 12px system-ui, sans-serif";
    ctx.textAlign = "center"; ctx.textBaseline = "middle";
    for (const area of map.shownAreas()) {
      const cell = frame.areas[area.properties.area_id];
      const point = area.properties.label_point?.coordinates;
      if (!cell || !point) continue;
      const [x, y] = toScreen(point[0], point[1]);
      ctx.lineWidth = 3; ctx.strokeStyle = "rgba(11,17,24,0.85)";
      ctx.strokeText(String(cell.value), x, y);
      ctx.fillStyle = "#ffffff"; ctx.fillText(String(cell.value), x, y);
    }
  }

  function applyLanguage() {
    play.title = text("play");
    range.options[0].textContent = text("h24");
    range.options[1].textContent = text("d7");
    renderLabel();
  }

  slider.addEventListener("input", () => { stopPlay(); show(Number(slider.value)); });
  play.addEventListener("click", togglePlay);
  range.addEventListener("change", () => { tl.hours = Number(range.value); show(null); reload(); });
  setInterval(() => { if (supported()) reload(); }, REFRESH_MS);

  return { reload, areaBand, draw, applyLanguage, hidesSensors: () => !atLive() };
}
