/**
 * stream-guard live dashboard: every live stream with its rolling score, verdict, alert state and a scrolling
 * anomaly map, fed by the server's events websocket (/v1/events). "Test with my microphone" sends this browser's
 * microphone over WebRTC (stream-guard-client.js) and shows its own stream, whose events come back on the
 * signalling connection. Plain ES modules, no build step; the server ships these files as they are.
 *
 * Auth: the page uses the same token as every other route, passed as `?token=` (browsers cannot set headers on
 * websockets). It is read from this page's own `?token=` or asked for when the server refuses the connection.
 */
import { StreamGuardClient, signallingUrl } from "./stream-guard-client.js";

const CHART_SPAN_S = 30;           // seconds of stream time visible in a score chart
const ENDED_TTL_MS = 5 * 60_000;   // how long an ended stream stays on the page
const TOKEN_KEY = "stream-guard-token";

/** Inferno-like colour ramp, 256 entries of [r, g, b]: dark = ordinary, bright = anomalous. */
const RAMP = (() => {
  const stops = [[0, 0, 4], [40, 11, 84], [101, 21, 110], [159, 42, 99], [212, 72, 66], [245, 125, 21],
    [250, 193, 39], [252, 255, 164]];
  const out = [];
  for (let i = 0; i < 256; i++) {
    const x = (i / 255) * (stops.length - 1);
    const k = Math.min(Math.floor(x), stops.length - 2);
    const f = x - k;
    out.push(stops[k].map((c, j) => Math.round(c + (stops[k + 1][j] - c) * f)));
  }
  return out;
})();

const fmt = (x, digits = 2) => (x === null || x === undefined || Number.isNaN(x) ? "–" : Number(x).toFixed(digits));

/** One stream's card: its score chart, heatmap and badges, updated event by event. */
class StreamView {
  constructor(id, container) {
    this.id = id;
    const node = document.getElementById("stream-template").content.firstElementChild.cloneNode(true);
    node.dataset.stream = id;
    node.dataset.windows = "0";
    node.dataset.mapColumns = "0";
    // Events carry stream ids only; a WebRTC stream's id ends with its participant id, a readable title.
    const rtc = /^webrtc-p\d+-(.+)$/.exec(id);
    node.querySelector(".label").textContent = rtc ? rtc[1] : id;
    node.querySelector(".id").textContent = id;
    container.appendChild(node);
    this.node = node;
    this.q = (sel) => node.querySelector(sel);
    this.points = [];               // {t, p, s} per scored window
    this.threshold = 0.5;
    this.heat = this.q(".heatmap");
    this.heatCtx = this.heat.getContext("2d");
    this.heatCtx.fillStyle = "#000004";
    this.heatCtx.fillRect(0, 0, this.heat.width, this.heat.height);
    this.hi = null;                 // running range of the heatmap colour scale (signed-log domain)
    this.lo = null;
    this.lastEnd = 0;
    this.lastWindow = -1;
    this.mapEnd = -Infinity;
    this.ended = false;
    this.scoreLog = [];             // {window: index, end_s, at: epoch ms when shown} (latency measurement)
  }

  setLabel(label, mine) {
    this.q(".label").textContent = label;
    if (mine) {
      this.node.dataset.mine = "true";
      this.q(".mine").hidden = false;
    }
  }

  onScore(ev) {
    // The same event can reach the page twice (its own WebRTC connection and /v1/events): keep the first.
    if (ev.window_index <= this.lastWindow) return;
    this.lastWindow = ev.window_index;
    // A window that abstained without inference (silence, clipping) has no score and no probability: it is
    // counted and shown as "–", and leaves a gap in the chart instead of a point at 0.
    const p = ev.probability ?? null;
    const s = ev.smoothed ?? p;
    this.points.push({ t: ev.end_s, p, s });
    const cutoff = ev.end_s - CHART_SPAN_S * 1.5;
    while (this.points.length && this.points[0].t < cutoff) this.points.shift();
    this.lastEnd = Math.max(this.lastEnd, ev.end_s);
    const n = Number(this.node.dataset.windows) + 1;
    this.node.dataset.windows = String(n);
    this.node.dataset.lastScore = String(ev.score);
    this.node.dataset.lastProbability = String(p);
    this.node.dataset.verdict = ev.verdict;
    this.q(".verdict").textContent = ev.verdict;
    this.q(".prob").textContent = fmt(p);
    this.q(".smoothed").textContent = fmt(s);
    this.q(".score").textContent = fmt(ev.score, 3);
    this.q(".windows").textContent = String(n);
    this.q(".time").textContent = fmt(ev.end_s, 1);
    this.q(".latency").textContent = fmt(ev.latency_ms, 0);
    this.q(".reasons").textContent = (ev.reasons || []).join(", ");
    this.drawChart();
    const shownAt = performance.timeOrigin + performance.now();
    this.scoreLog.push({
      window: ev.window_index, end_s: ev.end_s, score: ev.score, probability: p, latency_ms: ev.latency_ms, at: shownAt,
    });
  }

  onMap(ev) {
    const rows = ev.columns || [];
    if (!rows.length || !rows[0].length) return;
    if (ev.start_s < this.mapEnd - 1e-6) return;   // columns already drawn
    this.mapEnd = ev.start_s + rows[0].length * (ev.frame_step_s || 0);
    const n = rows[0].length;
    const F = rows.length;
    const ctx = this.heatCtx;
    const W = this.heat.width;
    const H = this.heat.height;
    // A signed log compresses the heavy upper tail of discrepancy maps and works for maps of any sign (some
    // models emit log energies); the colour scale follows the stream's own range, slowly forgetting old peaks.
    let mx = -Infinity;
    let mn = Infinity;
    const vals = rows.map((r) => r.map((v) => {
      if (v === null || v === undefined || !Number.isFinite(v)) return null;   // no window covered this cell
      const x = Math.sign(v) * Math.log1p(Math.abs(v));
      if (x > mx) mx = x;
      if (x < mn) mn = x;
      return x;
    }));
    if (mx === -Infinity) return;
    if (this.lo === null) {
      this.lo = mn;
      this.hi = mx;
    }
    const decay = (this.hi - this.lo) * 0.002 * n;
    this.hi = Math.max(mx, this.hi - decay);
    this.lo = Math.min(mn, this.lo + decay);
    const span = Math.max(this.hi - this.lo, 1e-6);
    const colW = 2;                                     // px per map column (a column is frame_step_s long)
    const shift = Math.min(n * colW, W);
    ctx.drawImage(this.heat, shift, 0, W - shift, H, 0, 0, W - shift, H);
    const img = ctx.createImageData(n * colW, H);
    for (let y = 0; y < H; y++) {
      const row = F - 1 - Math.min(F - 1, Math.floor((y / H) * F));   // low frequencies at the bottom
      for (let j = 0; j < n; j++) {
        const v = vals[row][j];
        const c = v === null ? RAMP[0] : RAMP[Math.max(0, Math.min(255, Math.round(((v - this.lo) / span) * 255)))];
        for (let k = 0; k < colW; k++) {
          const o = (y * n * colW + j * colW + k) * 4;
          img.data[o] = c[0];
          img.data[o + 1] = c[1];
          img.data[o + 2] = c[2];
          img.data[o + 3] = 255;
        }
      }
    }
    ctx.putImageData(img, W - n * colW, 0);
    this.node.dataset.mapColumns = String(Number(this.node.dataset.mapColumns) + n);
    this.node.dataset.mapRows = String(F);
  }

  onAlert(ev) {
    const raised = ev.state === "raised";
    this.node.dataset.alert = raised ? "raised" : "clear";
    if (raised) this.node.dataset.alertsRaised = String(Number(this.node.dataset.alertsRaised || 0) + 1);
    this.q(".alert").hidden = !raised;
    this.q(".alert").textContent = raised ? `ALERT at ${fmt(ev.at_s, 1)} s` : "ALERT";
  }

  onSummary(ev) {
    this.ended = true;
    this.node.dataset.ended = "true";
    this.node.dataset.verdict = ev.verdict;
    this.node.dataset.summaryScore = String(ev.score);
    this.q(".verdict").textContent = ev.verdict;
    // The recording's verdict compares its probability with the model's threshold (an operating point, not
    // 0.5): show both, so "real" next to p 0.6 reads as "below a 0.65 threshold", never as a contradiction.
    if (ev.probability !== null && ev.probability !== undefined) this.q(".prob").textContent = fmt(ev.probability);
    if (ev.threshold_probability !== null && ev.threshold_probability !== undefined) {
      this.q(".threshold").textContent = fmt(ev.threshold_probability);
      this.q(".thr").hidden = false;
      this.node.dataset.thresholdProbability = String(ev.threshold_probability);
    }
    const badge = this.q(".ended");
    badge.hidden = false;
    badge.textContent = `ended · ${fmt(ev.duration_s, 1)} s · ${ev.windows} windows`;
    this.q(".alert").hidden = true;
    this.endedAt = Date.now();
  }

  onError(ev) {
    this.q(".reasons").textContent = `error: ${ev.code}: ${ev.message}`;
  }

  drawChart() {
    const cv = this.q(".chart");
    const ctx = cv.getContext("2d");
    const W = cv.width;
    const H = cv.height;
    ctx.clearRect(0, 0, W, H);
    const t1 = Math.max(this.lastEnd, CHART_SPAN_S);
    const t0 = t1 - CHART_SPAN_S;
    const x = (t) => ((t - t0) / CHART_SPAN_S) * W;
    const y = (p) => H - 4 - p * (H - 8);
    ctx.strokeStyle = "#3a4654";
    ctx.setLineDash([4, 4]);
    ctx.beginPath();
    ctx.moveTo(0, y(this.threshold));
    ctx.lineTo(W, y(this.threshold));
    ctx.stroke();
    ctx.setLineDash([]);
    ctx.fillStyle = "#8a97a6";
    for (const pt of this.points) {
      if (pt.t >= t0 && pt.p !== null) ctx.fillRect(x(pt.t) - 1.5, y(pt.p) - 1.5, 3, 3);
    }
    ctx.strokeStyle = "#3d8bd9";
    ctx.lineWidth = 2;
    ctx.beginPath();
    let first = true;
    for (const pt of this.points) {
      if (pt.t < t0) continue;
      if (pt.s === null) {
        first = true;
        continue;
      }
      if (first) ctx.moveTo(x(pt.t), y(pt.s));
      else ctx.lineTo(x(pt.t), y(pt.s));
      first = false;
    }
    ctx.stroke();
    ctx.lineWidth = 1;
    ctx.fillStyle = "#8a97a6";
    ctx.font = "10px sans-serif";
    ctx.fillText("1", 2, 10);
    ctx.fillText("0", 2, H - 2);
    ctx.fillText(`${fmt(t1, 0)} s`, W - 30, H - 2);
  }
}

/** The page: the events connection, the list of streams and the microphone test. */
class Dashboard {
  constructor() {
    this.container = document.getElementById("streams");
    this.streams = new Map();
    this.mine = new Set();          // stream ids fed by this page's own WebRTC client (events arrive there)
    this.token = new URLSearchParams(location.search).get("token") || localStorage.getItem(TOKEN_KEY) || "";
    this.retryMs = 500;
    this.mic = null;
    this.micStream = null;
    document.getElementById("mic-button").addEventListener("click", () => this.toggleMic());
    document.getElementById("token-form").addEventListener("submit", (e) => {
      e.preventDefault();
      this.token = document.getElementById("token").value.trim();
      localStorage.setItem(TOKEN_KEY, this.token);
      document.getElementById("token-form").hidden = true;
      this.connectEvents();
    });
    setInterval(() => this.expire(), 10_000);
  }

  view(id) {
    let v = this.streams.get(id);
    if (!v) {
      v = new StreamView(id, this.container);
      this.streams.set(id, v);
      document.getElementById("empty").hidden = true;
    }
    return v;
  }

  expire() {
    for (const [id, v] of this.streams) {
      if (v.ended && Date.now() - v.endedAt > ENDED_TTL_MS) {
        v.node.remove();
        this.streams.delete(id);
      }
    }
    document.getElementById("empty").hidden = this.streams.size > 0;
  }

  setConnection(state, text) {
    const el = document.getElementById("connection");
    el.dataset.state = state;
    el.textContent = text;
  }

  notice(text) {
    const el = document.getElementById("notice");
    el.textContent = text;
    el.hidden = !text;
  }

  /** Route one stream-guard event to its stream's card. */
  dispatch(ev) {
    if (!ev || typeof ev !== "object" || !ev.stream) return;
    const v = this.view(ev.stream);
    if (ev.type === "score") v.onScore(ev);
    else if (ev.type === "map") v.onMap(ev);
    else if (ev.type === "alert") v.onAlert(ev);
    else if (ev.type === "summary") v.onSummary(ev);
    else if (ev.type === "error") v.onError(ev);
  }

  connectEvents() {
    const url = signallingUrl("/v1/events", this.token);
    this.setConnection("connecting", "connecting…");
    const ws = new WebSocket(url);
    this.events = ws;
    ws.onopen = () => {
      this.retryMs = 500;
      this.setConnection("open", "live");
    };
    ws.onmessage = (msg) => {
      let data;
      try {
        data = JSON.parse(msg.data);
      } catch {
        return;
      }
      const items = Array.isArray(data) ? data : [data];
      for (const item of items) {
        const ev = item && item.type === "event" && item.event ? item.event : item;
        if (ev && this.mine.has(ev.stream)) continue;   // shown from the WebRTC connection already
        this.dispatch(ev);
      }
    };
    ws.onclose = (ev) => {
      if (ev.code === 4401 || ev.code === 1008) {
        this.setConnection("refused", "token needed");
        document.getElementById("token-form").hidden = false;
        return;
      }
      this.setConnection("closed", `disconnected (${ev.code}); retrying`);
      setTimeout(() => this.connectEvents(), this.retryMs);
      this.retryMs = Math.min(this.retryMs * 2, 10_000);
    };
  }

  async toggleMic() {
    const button = document.getElementById("mic-button");
    if (this.mic) {
      await this.mic.stop();
      return;
    }
    button.disabled = true;
    this.notice("");
    try {
      // Browser voice processing (noise suppression, gain control) would change what the detector hears.
      this.micStream = await navigator.mediaDevices.getUserMedia({
        audio: { echoCancellation: false, noiseSuppression: false, autoGainControl: false, channelCount: 1 },
      });
      const client = new StreamGuardClient({ url: "/v1/webrtc", token: this.token });
      client.addEventListener("stream", (e) => {
        this.mine.add(e.detail.stream);
        this.view(e.detail.stream).setLabel(e.detail.label, true);
      });
      client.addEventListener("event", (e) => this.dispatch(e.detail));
      client.addEventListener("error", (e) => this.notice(`microphone stream: ${e.detail.message}`));
      client.addEventListener("close", () => this.micStopped());
      const track = this.micStream.getAudioTracks()[0];
      this.mic = client;
      await client.start([{ track, participant: "microphone", label: "My microphone" }]);
      button.textContent = "Stop microphone";
      button.dataset.active = "true";
    } catch (err) {
      this.notice(String(err.message || err));
      this.micStopped();
    } finally {
      button.disabled = false;
    }
  }

  micStopped() {
    if (this.micStream) this.micStream.getTracks().forEach((t) => t.stop());
    this.micStream = null;
    this.mic = null;
    const button = document.getElementById("mic-button");
    button.textContent = "Test with my microphone";
    button.dataset.active = "false";
  }
}

const dashboard = new Dashboard();
window.streamGuard = dashboard;    // for debugging from the console (and the end-to-end tests)
dashboard.connectEvents();
