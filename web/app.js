// The drawing page: pointer input -> ink -> strokes streamed to the server, predictions -> view.
// Drawing lives in ink.js, the socket in connection.js; this file wires them to the page.

import { Connection, defaultURL } from "./connection.js";
import { Ink, InkCanvas, paintPreview } from "./ink.js";

const $ = (id) => document.getElementById(id);
const TOP_K = 3;
const ERROR_SHOW_MS = 8000;

const ink = new Ink();
const pad = new InkCanvas($("pad"));
const conn = new Connection(defaultURL(), { top_k: TOP_K, preview: true });

// ---- Streaming strokes -------------------------------------------------------------------
// Points wait in `outbox` and leave once per animation frame; a stroke's first batch is its
// "start", the pointer going up sends the rest with "end".

const outbox = { started: false, points: [] };
let staleBefore = 0; // predictions for sequence numbers below this describe undone ink
let finalWanted = false; // the person asked for the final answer and has not drawn since
let frameRequested = false;

/** A limit the server announced in welcome (protocol.Limits), or `fallback`. */
function limit(name, fallback) {
  const value = conn.welcome?.limits?.[name];
  return Number.isFinite(value) && value > 0 ? value : fallback;
}

function maxPoints() {
  return limit("max_points_per_message", 256);
}

/** Send one stroke's points as start/points/end messages within the per-message limit. */
function sendStroke(points, { start, end }) {
  const size = maxPoints();
  let i = 0;
  if (start) {
    conn.send({ type: "start", points: points.slice(0, size) });
    i = size;
  }
  for (; i < points.length; i += size) {
    conn.send({ type: "points", points: points.slice(i, i + size) });
  }
  if (end) conn.send({ type: "end" });
}

function flush(end = false) {
  const { points } = outbox;
  outbox.points = [];
  if (!conn.ready) return; // the whole drawing is replayed on reconnect
  if (!outbox.started) {
    if (points.length === 0 && !end) return;
    outbox.started = true;
    sendStroke(points, { start: true, end });
  } else if (points.length || end) {
    sendStroke(points, { start: false, end });
  }
  if (end) outbox.started = false;
}

/** A new session knows nothing: send every stroke again, the one being drawn included. */
function replay() {
  outbox.points = [];
  outbox.started = false;
  for (const stroke of ink.strokes) sendStroke(stroke, { start: true, end: true });
  if (ink.current) {
    sendStroke(ink.current, { start: true, end: false });
    outbox.started = true;
  }
  if (finalWanted && !ink.current) conn.send({ type: "recognize" });
  staleBefore = conn.seq; // show only the answer for the whole drawing, not each step
}

// At most ~60 batches a second, even on 120-240 Hz screens: well inside the server's rate limit.
const MIN_SEND_INTERVAL_MS = 15;
let lastFlush = 0;

function requestFrame() {
  if (frameRequested) return;
  frameRequested = true;
  requestAnimationFrame((now) => {
    frameRequested = false;
    pad.render(ink);
    if (now - lastFlush >= MIN_SEND_INTERVAL_MS) {
      lastFlush = now;
      flush();
    } else if (outbox.points.length) {
      requestFrame();
    }
  });
}

// ---- Pointer input -----------------------------------------------------------------------

let activePointer = null;

function samePoint(a, b) {
  return b !== undefined && a[0] === b[0] && a[1] === b[1];
}

function onPointerDown(event) {
  if (activePointer !== null || (event.pointerType === "mouse" && event.button !== 0)) return;
  event.preventDefault();
  conn.wake();
  // Stay within the session's limits here, so the server never has to refuse a stroke.
  if (ink.all().length >= limit("max_strokes_per_session", Infinity)) {
    showError(describeError({ code: "too_many_strokes" }));
    return;
  }
  if (ink.points >= limit("max_points_per_session", Infinity)) {
    showError(describeError({ code: "too_many_points" }));
    return;
  }
  activePointer = event.pointerId;
  debug.lastPointerType = event.pointerType;
  pad.canvas.setPointerCapture(event.pointerId);
  if (ink.current) endStroke();
  const point = pad.toUnits(event);
  ink.begin(point);
  outbox.started = false;
  outbox.points = [point];
  inkChanged();
  requestFrame();
}

function onPointerMove(event) {
  if (event.pointerId !== activePointer || !ink.current) return;
  const events = event.getCoalescedEvents?.() ?? [];
  for (const e of events.length ? events : [event]) {
    const point = pad.toUnits(e);
    if (samePoint(point, ink.current.at(-1))) continue;
    if (ink.points >= limit("max_points_per_session", Infinity)) break;
    ink.add(point);
    outbox.points.push(point);
  }
  requestFrame();
}

function onPointerUp(event) {
  if (event.pointerId !== activePointer) return;
  activePointer = null;
  endStroke();
}

function endStroke() {
  ink.end();
  flush(true);
  pad.render(ink);
}

// ---- Commands ----------------------------------------------------------------------------

function inkChanged() {
  finalWanted = false;
  $("pad-hint").hidden = !ink.isEmpty;
}

function undo() {
  const unsent = ink.current !== null && !outbox.started; // the server has not seen it yet
  activePointer = null;
  outbox.points = [];
  outbox.started = false;
  if (!ink.undo()) return;
  inkChanged();
  pad.render(ink);
  if (ink.isEmpty) showEmpty();
  if (unsent) return;
  const seq = conn.send({ type: "undo" });
  if (seq !== null) staleBefore = seq;
}

function clear() {
  activePointer = null;
  outbox.points = [];
  outbox.started = false;
  ink.clear();
  inkChanged();
  pad.render(ink);
  const seq = conn.send({ type: "clear" });
  if (seq !== null) staleBefore = seq;
  showEmpty();
}

function recognize() {
  if (ink.current) {
    activePointer = null;
    endStroke();
  }
  if (ink.isEmpty) {
    showEmpty("Nothing to recognize yet: draw a digit first");
    return;
  }
  finalWanted = true;
  if (conn.send({ type: "recognize" }) === null) {
    $("verdict").textContent = "Final answer comes once the connection is back";
  }
}

let retryTimer = null;

/** The server was too busy to answer `recognize`: ask again shortly, if still wanted. */
function retryRecognize() {
  clearTimeout(retryTimer);
  retryTimer = setTimeout(() => {
    if (finalWanted && result.dataset.state !== "final") conn.send({ type: "recognize" });
  }, 500);
}

function onKeyDown(event) {
  conn.wake();
  const onButton = event.target instanceof HTMLButtonElement;
  if (event.key === "Enter" && !onButton) {
    event.preventDefault();
    if (!event.repeat) recognize();
  } else if ((event.key === "Delete" || event.key === "Backspace") && !event.repeat) {
    event.preventDefault();
    clear();
  } else if ((event.ctrlKey || event.metaKey) && !event.shiftKey && event.key.toLowerCase() === "z") {
    event.preventDefault();
    undo();
  }
}

// ---- Showing predictions -----------------------------------------------------------------

const result = $("result");
const debug = { lastPredictionSeq: null, lastPointerType: null }; // read by the browser tests
let announced = "";
let predictionCount = 0;

function onMessage({ detail: message }) {
  if (message.type === "prediction") onPrediction(message);
  else if (message.type === "error" && message.code !== "idle_timeout") {
    showError(describeError(message));
    if (message.code === "overloaded" && finalWanted) retryRecognize();
  }
}

function onPrediction(p) {
  debug.lastPredictionSeq = p.seq;
  if (typeof p.seq === "number" && p.seq < staleBefore) return;
  predictionCount += 1;
  result.dataset.count = String(predictionCount);
  if (p.empty || !Array.isArray(p.top) || p.top.length === 0 || ink.isEmpty) {
    showEmpty(p.final ? "Nothing to recognize yet: draw a digit first" : undefined);
    return;
  }
  const best = p.top[0];
  result.dataset.state = p.final ? "final" : "live";
  $("digit").textContent = String(best.digit);
  $("verdict").textContent = p.final
    ? `Final answer: ${best.digit} (${percent(best.p)})`
    : `Live guess, ${percent(best.p)} sure`;
  renderBars(p.top);
  paintPreview($("preview"), p.input);
  announce(p.final ? `Final answer: ${best.digit}` : `Looks like ${best.digit}`);
}

function showEmpty(message = "Draw a digit to see a guess") {
  result.dataset.state = "empty";
  $("digit").textContent = "–";
  $("verdict").textContent = message;
  renderBars([]);
  paintPreview($("preview"), null);
  announce("");
}

function renderBars(top) {
  const rows = [];
  for (let i = 0; i < TOP_K; i++) {
    const item = top[i];
    const label = item ? String(item.digit) : "·";
    const p = item ? clamp01(item.p) : 0;
    const fill = span("bar-fill");
    fill.style.width = `${(p * 100).toFixed(1)}%`;
    const track = span("bar-track");
    track.append(fill);
    const li = document.createElement("li");
    li.append(span("bar-digit", label), track, span("bar-p", item ? percent(p) : ""));
    if (item) li.setAttribute("aria-label", `${label}: ${percent(p)}`);
    else li.className = "blank";
    rows.push(li);
  }
  $("bars").replaceChildren(...rows);
}

function span(className, text = "") {
  const el = document.createElement("span");
  el.className = className;
  el.textContent = text;
  return el;
}

function clamp01(p) {
  return Math.max(0, Math.min(1, Number(p) || 0));
}

function percent(p) {
  const v = clamp01(p) * 100;
  return v >= 99.5 || v < 0.5 ? `${Math.round(v)}%` : `${v.toFixed(v < 10 ? 1 : 0)}%`;
}

function announce(text) {
  if (text === announced) return;
  announced = text;
  $("announce").textContent = text;
}

// ---- Connection state and errors ---------------------------------------------------------

function onState({ detail }) {
  const el = $("conn");
  el.dataset.state = detail.state;
  document.body.dataset.conn = detail.state; // lets the style mute a guess that may be stale
  const text = {
    connecting: detail.attempt ? "Reconnecting…" : "Connecting…",
    open: "Connected",
    idle: "Paused: draw to reconnect",
    waiting: `Offline, retrying in ${Math.max(1, Math.round((detail.delayMs ?? 0) / 1000))} s`,
  }[detail.state];
  $("conn-text").textContent = text;
}

function onWelcome({ detail: welcome }) {
  const parts = [welcome.model, welcome.accelerator && welcome.accelerator.toUpperCase()];
  $("model-info").textContent = `Model ${parts.filter(Boolean).join(" on ")}`;
  hideError();
  replay();
  if (ink.isEmpty) showEmpty();
}

// What a person can do about the errors they can cause; other codes show the server's text.
const ERROR_ADVICE = {
  too_many_points: "That drawing has too many points for one digit: clear the pad and draw again.",
  too_many_strokes: "That is a lot of strokes for one digit: clear the pad and draw again.",
  rate_limited: "Too many updates at once; slowing down.",
  overloaded: "The server is busy right now; the guess will catch up.",
  too_many_connections: "The server has too many visitors right now; retrying.",
  idle_timeout: "Paused after a while without drawing; it reconnects when you draw.",
  internal: "Something went wrong on the server; try again.",
};

function describeError(e) {
  let text = ERROR_ADVICE[e.code] ?? e.message ?? "The server could not handle that.";
  text = text.charAt(0).toUpperCase() + text.slice(1);
  return e.code ? `${text} (${e.code})` : text;
}

let errorTimer = null;

function showError(text) {
  $("error-text").textContent = text;
  $("error").hidden = false;
  clearTimeout(errorTimer);
  errorTimer = setTimeout(hideError, ERROR_SHOW_MS);
}

function hideError() {
  $("error").hidden = true;
}

// ---- Share / watch mode (issue 5) --------------------------------------------------------
// Reserved: the #share section in index.html and this spot. A share feature can reach the
// drawing through `window.digits` (ink, connection) without changing the code above.

// ---- Start -------------------------------------------------------------------------------

function start() {
  const canvas = pad.canvas;
  canvas.addEventListener("pointerdown", onPointerDown);
  canvas.addEventListener("pointermove", onPointerMove);
  canvas.addEventListener("pointerup", onPointerUp);
  canvas.addEventListener("pointercancel", onPointerUp);
  canvas.addEventListener("lostpointercapture", onPointerUp);
  canvas.addEventListener("contextmenu", (e) => e.preventDefault());
  document.addEventListener("keydown", onKeyDown);
  $("undo").addEventListener("click", undo);
  $("clear").addEventListener("click", clear);
  $("recognize").addEventListener("click", recognize);
  $("error-close").addEventListener("click", hideError);

  new ResizeObserver(() => {
    if (pad.fit()) pad.render(ink);
  }).observe(canvas);
  window.addEventListener("resize", () => pad.fit() && pad.render(ink));
  pad.fit();
  showEmpty();

  conn.addEventListener("state", onState);
  conn.addEventListener("welcome", onWelcome);
  conn.addEventListener("message", onMessage);
  window.addEventListener("online", () => {
    if (!conn.ws && !conn.idle) conn.connect();
  });
  conn.connect();
  window.digits = { ink, conn, pad, debug };
}

start();
