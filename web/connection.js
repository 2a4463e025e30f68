// The WebSocket to the recognition server: hello on every open (asking to resume the
// previous session), sequence numbers, reconnection with exponential backoff. Messages are
// built and read by protocol.js; this file knows the socket, not the drawing.

import * as protocol from "./protocol.js";

const BACKOFF_FIRST_MS = 250;
const BACKOFF_MAX_MS = 8000;
// After a 1012 (the server process is restarting; another one, or it again, resumes the
// session) reconnect at once, spread over this much so its clients do not all arrive together.
const RESTART_SPREAD_MS = 250;

/** The WebSocket address on the host that served this page. */
export function defaultURL(location = window.location) {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${location.host}/ws`;
}

/**
 * A self-healing connection. Events (all CustomEvent, payload in `detail`):
 * - "state":   {state: "connecting"|"open"|"waiting"|"idle"|"restarting", attempt, delayMs}
 *              connection state changes; "idle" follows the server's idle timeout, and `wake()`
 *              ends it; "restarting" follows a close with 1012 (a deploy) until the session
 *              is back, or until that first try fails and "waiting" takes over
 * - "welcome": the server's welcome message; the session is ready for strokes. After a
 *              reconnection `welcome.resumed` says whether the server gave the old session
 *              back (strokes intact); if not, the session is new and empty
 * - "message": every other server message (prediction, error, pong, room messages), as
 *              protocol.parse reads it
 */
export class Connection extends EventTarget {
  /** `options`: {topK, preview}, asked for in every hello. */
  constructor(url, options) {
    super();
    this.url = url;
    this.options = options;
    this.ws = null;
    this.ready = false;
    this.seq = 0;
    this.attempt = 0;
    this.timer = null;
    this.welcome = null;
    this.idle = false;
    this.restarting = false; // closed with 1012, and not connected again yet
    this.resumeToken = null; // from the latest welcome: brings the session back after a drop
  }

  /** Reconnect now if the server closed an idle connection; no-op otherwise. */
  wake() {
    if (this.idle) {
      this.idle = false;
      this.connect();
    }
  }

  connect() {
    clearTimeout(this.timer);
    this.timer = null;
    this._emit("state", { state: this.restarting ? "restarting" : "connecting", attempt: this.attempt });
    let ws;
    try {
      ws = new WebSocket(this.url);
    } catch (err) {
      this._scheduleReconnect();
      return;
    }
    this.ws = ws;
    ws.addEventListener("open", () => {
      ws.send(protocol.encode(protocol.hello({ ...this.options, resume: this.resumeToken })));
    });
    ws.addEventListener("message", (event) => this._onMessage(ws, event));
    ws.addEventListener("close", (event) => this._onClose(ws, event));
  }

  /** Send a message built by protocol.js with the next sequence number; returns that
   * number, or null when offline. */
  send(message) {
    if (!this.ready) return null;
    this.seq += 1;
    this.ws.send(protocol.encode(message, this.seq));
    return this.seq;
  }

  _onMessage(ws, event) {
    if (ws !== this.ws) return;
    const message = protocol.parse(event.data);
    if (message === null) return;
    if (message.type === "welcome") {
      this.ready = true;
      this.attempt = 0;
      this.restarting = false;
      this.welcome = message;
      this.resumeToken = message.resumeToken;
      this._emit("state", { state: "open", attempt: 0 });
      this._emit("welcome", message);
    } else {
      if (message.type === "error" && message.code === "idle_timeout") this.idle = true;
      this._emit("message", message);
    }
  }

  _onClose(ws, event) {
    if (ws !== this.ws) return;
    this.ws = null;
    this.ready = false;
    if (this.idle) {
      this._emit("state", { state: "idle", attempt: 0 });
      return;
    }
    if (event.code === protocol.CLOSE_SERVICE_RESTART && !this.restarting) {
      this._reconnectSoon();
      return;
    }
    this._scheduleReconnect();
  }

  /** The server process is going (a deploy): come back at once, not after a backoff. */
  _reconnectSoon() {
    this.restarting = true;
    const delayMs = Math.round(Math.random() * RESTART_SPREAD_MS);
    this._emit("state", { state: "restarting", attempt: this.attempt, delayMs });
    this.timer = setTimeout(() => this.connect(), delayMs);
  }

  _scheduleReconnect() {
    this.restarting = false; // (a failed try after a restart: back to the usual backoff)
    const base = Math.min(BACKOFF_MAX_MS, BACKOFF_FIRST_MS * 2 ** this.attempt);
    const delayMs = Math.round(base * (0.75 + Math.random() * 0.5));
    this.attempt += 1;
    this._emit("state", { state: "waiting", attempt: this.attempt, delayMs });
    this.timer = setTimeout(() => this.connect(), delayMs);
  }

  _emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }
}
