/**
 * stream-guard-client.js: send audio tracks to a stream-guard server over WebRTC and receive their events.
 *
 * A conferencing plugin hands each participant's audio track to the server; the server scores every track as its
 * own stream and sends that stream's events (scores, anomaly-map columns, alerts, the final summary) back on the
 * same signalling websocket. No build step and no dependencies: import it as an ES module straight from the server
 * (`/stream-guard-client.js`) or copy it into a plugin.
 *
 *   import { StreamGuardClient } from "/stream-guard-client.js";
 *   const client = new StreamGuardClient({ url: "wss://guard.example.com/v1/webrtc", token: "..." });
 *   client.addEventListener("event", (e) => console.log(e.detail));   // e.detail: one stream-guard event (JSON)
 *   await client.start([{ track: micTrack, participant: "alice", label: "Alice" }]);
 *   ...
 *   await client.stop();                                                // streams end with their summaries
 *
 * Events dispatched (CustomEvent, payload in `detail`):
 *   "stream"     a track was accepted: {stream, participant, label, track, mid, codec}
 *   "event"      a stream-guard event of one of this client's streams: {type: "score"|"map"|"alert"|"summary"|..}
 *   "streamend"  a stream ended: {stream, reason: "ended"|"stalled"|"closed"|...}
 *   "error"      the server refused something: {code, message, fatal}
 *   "close"      the signalling connection closed: {code, reason}
 *
 * The peer connection lives as long as the websocket: closing either ends the streams on the server.
 */

/** Resolve a ws(s):// URL for the signalling route, relative to the page when `url` is a path. */
export function signallingUrl(url, token) {
  const base = typeof location !== "undefined" ? location.href : "http://localhost/";
  const u = new URL(url || "/v1/webrtc", base);
  if (u.protocol === "http:") u.protocol = "ws:";
  if (u.protocol === "https:") u.protocol = "wss:";
  if (token) u.searchParams.set("token", token);
  return u.toString();
}

export class StreamGuardClient extends EventTarget {
  /**
   * @param {object} options
   * @param {string} [options.url="/v1/webrtc"] signalling websocket (absolute, or a path on this page's server)
   * @param {string} [options.token] the server's auth token (sent as `?token=`; browsers cannot set headers)
   * @param {RTCIceServer[]} [options.iceServers=[]] STUN/TURN servers; none are needed on one machine
   * @param {number} [options.gatherTimeoutMs=3000] longest wait for ICE gathering before the offer goes out
   */
  constructor({ url = "/v1/webrtc", token = "", iceServers = [], gatherTimeoutMs = 3000 } = {}) {
    super();
    this.url = signallingUrl(url, token);
    this.iceServers = iceServers;
    this.gatherTimeoutMs = gatherTimeoutMs;
    this.pc = null;
    this.ws = null;
    this.peer = null;
    /** stream id -> {stream, participant, label, ...} for the accepted tracks */
    this.streams = new Map();
  }

  _emit(name, detail) {
    this.dispatchEvent(new CustomEvent(name, { detail }));
  }

  /**
   * Send tracks and start receiving their events. Resolves once the server has answered; rejects with an Error
   * whose message carries the server's reason if it refuses (too many peers, no audio, ...).
   * @param {{track: MediaStreamTrack, participant: string, label?: string}[]} tracks
   */
  async start(tracks) {
    if (!tracks || !tracks.length) throw new Error("stream-guard: start() needs at least one audio track");
    const pc = new RTCPeerConnection({ iceServers: this.iceServers });
    this.pc = pc;
    const labels = {};
    const media = new MediaStream();
    const transceivers = [];
    for (const { track, participant, label } of tracks) {
      if (track.kind !== "audio") throw new Error(`stream-guard: track ${track.id} is ${track.kind}, not audio`);
      media.addTrack(track);
      const t = pc.addTransceiver(track, { direction: "sendonly", streams: [media] });
      transceivers.push(t);
      labels[track.id] = { participant, label: label || participant };
    }
    await pc.setLocalDescription(await pc.createOffer());
    await this._gathered(pc);
    transceivers.forEach((t, i) => {
      if (t.mid !== null) labels[t.mid] = labels[tracks[i].track.id];
    });
    const ws = new WebSocket(this.url);
    this.ws = ws;
    const answered = new Promise((resolve, reject) => {
      ws.onopen = () =>
        ws.send(JSON.stringify({ type: "offer", sdp: pc.localDescription.sdp, tracks: labels }));
      ws.onmessage = async (msg) => {
        let data;
        try {
          data = JSON.parse(msg.data);
        } catch {
          return;
        }
        if (data.type === "answer") {
          this.peer = data.peer;
          await pc.setRemoteDescription({ type: "answer", sdp: data.sdp });
          resolve();
        } else if (data.type === "stream") {
          this.streams.set(data.stream, data);
          this._emit("stream", data);
        } else if (data.type === "event") {
          this._emit("event", data.event);
        } else if (data.type === "stream_end") {
          this._emit("streamend", data);
        } else if (data.type === "error") {
          this._emit("error", data);
          if (data.fatal) reject(new Error(`stream-guard refused the connection: ${data.code}: ${data.message}`));
        }
      };
      ws.onerror = () => reject(new Error(`stream-guard: cannot reach ${this.url}`));
      ws.onclose = (ev) => {
        reject(new Error(`stream-guard: connection closed (${ev.code} ${ev.reason})`));
        this._emit("close", { code: ev.code, reason: ev.reason });
        this._closePeer();
      };
    });
    await answered;
    return this;
  }

  /** Wait until ICE gathering completes (all candidates in the offer; the server does not trickle). */
  _gathered(pc) {
    if (pc.iceGatheringState === "complete") return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(done, this.gatherTimeoutMs);
      function done() {
        clearTimeout(timer);
        pc.removeEventListener("icegatheringstatechange", check);
        resolve();
      }
      function check() {
        if (pc.iceGatheringState === "complete") done();
      }
      pc.addEventListener("icegatheringstatechange", check);
    });
  }

  _closePeer() {
    if (this.pc) {
      this.pc.getSenders().forEach((s) => s.track && s.track.stop());
      this.pc.close();
      this.pc = null;
    }
  }

  /** End the session: the server ends each stream with its summary (delivered as an "event") and closes. */
  async stop() {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) {
      this.ws.send(JSON.stringify({ type: "bye" }));
    } else {
      this._closePeer();
    }
  }
}
