// The drawing page: pointer input -> ink -> strokes streamed to the server, predictions -> view.
// Drawing lives in ink.js, the socket in connection.js; this file wires them to the page,
// including shared drawings (share links, watch mode, other members' strokes).

import { Connection, defaultURL } from "./connection.js";
import { Ink, InkCanvas, paintPreview } from "./ink.js";

const $ = (id) => document.getElementById(id);
const TOP_K = 3;
const ERROR_SHOW_MS = 8000;

const ink = new Ink();
const pad = new InkCanvas($("pad"));
const conn = new Connection(defaultURL(), { top_k: TOP_K, preview: true });

// In a shared drawing, `ink` holds this member's own strokes (what undo takes back) and
// `others` the other members' strokes by id; the pad shows both.
const others = new Map(); // stroke id -> {author, points, open}
const view = {
  all: () => [...[...others.values()].map((s) => s.points), ...ink.all()].filter((s) => s.length),
};

function render() {
  pad.render(view);
}

function canvasEmpty() {
  return view.all().length === 0;
}

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
    render();
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
  if (share.role === "watch") {
    showError(describeError({ code: "watch_only" }));
    return;
  }
  // Stay within the session's limits here, so the server never has to refuse a stroke.
  if (view.all().length >= limit("max_strokes_per_session", Infinity)) {
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
  render();
}

// ---- Commands ----------------------------------------------------------------------------

function inkChanged() {
  finalWanted = false;
  $("pad-hint").hidden = !canvasEmpty();
}

function undo() {
  if (share.role === "watch") return;
  const unsent = ink.current !== null && !outbox.started; // the server has not seen it yet
  activePointer = null;
  outbox.points = [];
  outbox.started = false;
  if (!ink.undo()) return;
  inkChanged();
  render();
  if (canvasEmpty()) showEmpty();
  if (unsent) return;
  const seq = conn.send({ type: "undo" });
  if (seq !== null) staleBefore = seq;
}

function clear() {
  if (share.role === "watch") return;
  activePointer = null;
  outbox.points = [];
  outbox.started = false;
  ink.clear();
  others.clear();
  inkChanged();
  render();
  const seq = conn.send({ type: "clear" });
  if (seq !== null) staleBefore = seq;
  showEmpty();
}

function recognize() {
  if (ink.current) {
    activePointer = null;
    endStroke();
  }
  if (canvasEmpty()) {
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
// read by the browser tests
const debug = { lastPredictionSeq: null, lastPointerType: null, resumed: false };
let announced = "";
let predictionCount = 0;

function onMessage({ detail: message }) {
  const roomHandler = ROOM_HANDLERS[message.type];
  if (roomHandler) roomHandler(message);
  else if (message.type === "prediction") onPrediction(message);
  else if (message.type === "error" && message.code !== "idle_timeout") {
    showError(describeError(message));
    if (message.code === "overloaded" && finalWanted) retryRecognize();
    if (message.code === "room_refused" || message.code === "room_full") joinRefused();
  }
}

function onPrediction(p) {
  debug.lastPredictionSeq = p.seq;
  if (typeof p.seq === "number" && p.seq < staleBefore) return;
  predictionCount += 1;
  result.dataset.count = String(predictionCount);
  if (p.empty || !Array.isArray(p.top) || p.top.length === 0 || canvasEmpty()) {
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
  debug.resumed = Boolean(welcome.resumed);
  if (welcome.resumed) {
    if (share.room) return; // the room's state ("joined") follows
    if (!inSync(welcome)) {
      conn.send({ type: "clear" }); // the server missed some of the drawing: send it all
      replay();
    } else if (finalWanted && !ink.current) conn.send({ type: "recognize" });
    return;
  }
  if (joinWith) {
    conn.send({ type: "join", room: joinWith.room, token: joinWith.token });
    return;
  }
  if (share.room) leftRoom(); // the room went with the old session
  replay();
  if (canvasEmpty()) showEmpty();
}

/** Whether a resumed session holds exactly the page's drawing. */
function inSync(welcome) {
  return !ink.current && welcome.strokes === ink.strokes.length && welcome.points === ink.points;
}

// What a person can do about the errors they can cause; other codes show the server's text.
const ERROR_ADVICE = {
  too_many_points: "That drawing has too many points for one digit: clear the pad and draw again.",
  too_many_strokes: "That is a lot of strokes for one digit: clear the pad and draw again.",
  rate_limited: "Too many updates at once; slowing down.",
  overloaded: "The server is busy right now; the guess will catch up.",
  too_many_connections: "The server has too many visitors right now; retrying.",
  idle_timeout: "Paused after a while without drawing; it reconnects when you draw.",
  room_refused: "That shared drawing is gone, or the link is wrong.",
  room_full: "That shared drawing is full right now.",
  too_many_rooms: "Too many shared drawings on the server right now; try again later.",
  watch_only: "You are watching: only people with the drawing link can draw.",
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

// ---- Share / watch mode -----------------------------------------------------------------
// "Share" turns this drawing into a room with a link to draw with and a link to watch. Opening
// a link (?room=ID&token=T) joins; a watch link makes the pad read-only. The server's room
// messages keep `others` and the member list up to date.

const share = { room: null, role: null, member: null, members: [], links: {} };
let joinWith = inviteFromURL(); // credentials to (re)join with when a session starts afresh

function inviteFromURL() {
  const params = new URLSearchParams(window.location.search);
  const room = params.get("room");
  const token = params.get("token");
  return room && token ? { room, token } : null;
}

function link(room, token) {
  const url = new URL(window.location.href);
  url.search = new URLSearchParams({ room, token }).toString();
  url.hash = "";
  return url.toString();
}

function startShare() {
  if (share.room || conn.send({ type: "share" }) === null) {
    if (!conn.ready) showError("Sharing needs the connection: try again once connected.");
  }
}

function onShared(m) {
  share.room = m.room;
  share.role = "draw";
  share.member = conn.welcome?.session ?? null;
  share.members = [{ member: share.member, role: "draw" }];
  share.links = { draw: link(m.room, m.draw_token), watch: link(m.room, m.watch_token) };
  joinWith = { room: m.room, token: m.draw_token };
  renderShare();
}

function onJoined(m) {
  share.room = m.room;
  share.role = m.role;
  share.member = m.member;
  share.members = Array.isArray(m.members) ? m.members : [];
  if (joinWith && !share.links[m.role]) share.links = { [m.role]: link(m.room, joinWith.token) };
  activePointer = null;
  outbox.points = [];
  outbox.started = false;
  ink.clear();
  others.clear();
  for (const s of m.strokes ?? []) {
    const points = s.points.map((p) => [p[0], p[1]]);
    if (s.author === m.member) {
      ink.strokes.push(points);
      ink.points += points.length;
    } else {
      others.set(s.id, { author: s.author, points, open: s.open });
    }
  }
  staleBefore = conn.seq; // what this session predicted before joining is not the room's
  inkChanged();
  render();
  if (canvasEmpty()) showEmpty();
  renderShare();
}

function onLeft() {
  leftRoom();
  conn.send({ type: "clear" }); // the server kept the room's ink as ours: send it in page order
  replay();
  render();
}

/** Back to drawing alone; the other members' strokes become this page's own. */
function leftRoom() {
  for (const s of others.values()) if (s.points.length) ink.strokes.push(s.points);
  ink.points = ink.all().reduce((n, s) => n + s.length, 0);
  others.clear();
  Object.assign(share, { room: null, role: null, member: null, members: [], links: {} });
  joinWith = null;
  if (window.location.search) window.history.replaceState(null, "", window.location.pathname);
  renderShare();
}

/** A join (by link, or again after a lost session) was refused: draw alone. */
function joinRefused() {
  if (share.room) leftRoom();
  joinWith = null;
  if (window.location.search) window.history.replaceState(null, "", window.location.pathname);
  renderShare();
  replay();
}

function onPresence(m) {
  share.members = share.members.filter((x) => x.member !== m.member);
  if (m.event === "joined") share.members.push({ member: m.member, role: m.role });
  renderShare();
}

function onStroke(m) {
  if (m.author === share.member) return;
  const points = (m.points ?? []).map((p) => [p[0], p[1]]);
  const stroke = others.get(m.stroke);
  if (m.event === "start" || !stroke) {
    others.set(m.stroke, { author: m.author, points, open: m.event !== "end" });
  } else {
    stroke.points.push(...points);
    if (m.event === "end") stroke.open = false;
  }
  $("pad-hint").hidden = !canvasEmpty();
  requestFrame();
}

function onUndone(m) {
  if (m.author === share.member) return; // taken back here already
  others.delete(m.stroke);
  render();
  if (canvasEmpty()) showEmpty();
}

function onCleared(m) {
  if (m.by === share.member) return;
  for (const [id, s] of others) {
    if (s.open) s.points = []; // a stroke still being drawn goes on, emptied
    else others.delete(id);
  }
  ink.strokes = [];
  ink.points = 0;
  if (ink.current) ink.current = [];
  $("pad-hint").hidden = !canvasEmpty();
  render();
  if (canvasEmpty()) showEmpty();
}

const ROOM_HANDLERS = {
  shared: onShared,
  joined: onJoined,
  left: onLeft,
  presence: onPresence,
  stroke: onStroke,
  undone: onUndone,
  cleared: onCleared,
};

function renderShare() {
  const inRoom = share.room !== null;
  const watching = share.role === "watch";
  document.body.dataset.mode = watching ? "watch" : inRoom ? "shared" : "solo";
  $("share-start").hidden = inRoom;
  $("share-info").hidden = !inRoom;
  $("undo").disabled = watching;
  $("clear").disabled = watching;
  for (const kind of ["draw", "watch"]) {
    $(`share-${kind}`).hidden = !share.links[kind];
    $(`share-${kind}-link`).value = share.links[kind] ?? "";
  }
  const count = share.members.length;
  const people = count === 1 ? "Only you so far" : `${count} people here`;
  $("share-status").textContent = watching
    ? `Watching a shared drawing (read-only). ${people}.`
    : `Shared drawing. ${people}.`;
  $("share-leave").textContent = watching ? "Stop watching" : "Leave";
}

function copyLink(event) {
  const input = $(event.currentTarget.dataset.copy);
  input.select();
  navigator.clipboard?.writeText(input.value).catch(() => {});
}

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
  $("share-start").addEventListener("click", startShare);
  $("share-leave").addEventListener("click", () => conn.send({ type: "leave" }));
  for (const button of document.querySelectorAll("[data-copy]")) {
    button.addEventListener("click", copyLink);
  }
  renderShare();

  new ResizeObserver(() => {
    if (pad.fit()) render();
  }).observe(canvas);
  window.addEventListener("resize", () => pad.fit() && render());
  pad.fit();
  showEmpty();

  conn.addEventListener("state", onState);
  conn.addEventListener("welcome", onWelcome);
  conn.addEventListener("message", onMessage);
  window.addEventListener("online", () => {
    if (!conn.ws && !conn.idle) conn.connect();
  });
  conn.connect();
  window.digits = { ink, conn, pad, debug, share, others };
}

start();
