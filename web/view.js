// The page's DOM: what the prediction panel, the connection pill, the note by the pad, the
// shared-drawing bar and dialog, and the error message show. Takes values, writes the DOM;
// decides nothing about the drawing or the wire.

import { describe, percent, steadyDigit } from "./guess.js";
import { paintPreview } from "./ink.js";

const TOP_K = 3;
const ERROR_SHOW_MS = 8000;
const ANNOUNCE_GAP_MS = 2000; // live verdict changes reach a screen reader at most this often
const COPIED_MS = 2000;

const $ = (id) => document.getElementById(id);

export class View {
  constructor() {
    this.result = $("result");
    this.count = 0; // predictions shown: tests and people can tell a new one came
    this.shown = null; // the digit in view, kept steady (guess.steadyDigit)
    this.verdict = null; // the verdict last announced
    this.announcer = { text: "", last: -Infinity, timer: null };
    this.errorTimer = null;
    this.copyTimer = null;
  }

  // ---- the prediction panel -----------------------------------------------------------------

  /** A prediction of non-empty ink (protocol.parse's shape). */
  prediction(p) {
    this.#counted();
    this.shown = steadyDigit(this.shown, p.top, p.final);
    const said = describe(p, this.shown);
    this.result.dataset.state = p.final ? "final" : "live";
    this.result.dataset.verdict = p.verdict;
    $("digit").textContent = said.digit;
    $("verdict").textContent = said.text;
    this.#bars(p.top);
    const maybe = p.verdict === "not_digit" ? "If it is a digit, the top 3 guesses" : "Top 3 guesses";
    $("bars").setAttribute("aria-label", maybe);
    paintPreview($("preview"), p.input);
    if (p.final) this.#announce(said.announce, true);
    else if (p.verdict !== this.verdict) this.#announce(said.announce, false);
    this.verdict = p.verdict;
  }

  /** No ink, or nothing to say about it yet. */
  empty(message, { counted = false } = {}) {
    if (counted) this.#counted();
    this.shown = null;
    this.verdict = null;
    this.result.dataset.state = "empty";
    delete this.result.dataset.verdict;
    $("digit").textContent = "–";
    $("verdict").textContent = message;
    this.#bars([]);
    $("bars").setAttribute("aria-label", "Top 3 guesses");
    paintPreview($("preview"), null);
    this.#announce("", true);
  }

  /** A line under the digit that does not change the guess (e.g. waiting for the network). */
  note(text) {
    $("verdict").textContent = text;
  }

  /** The ink changed in a way no smooth guess should carry over (undo, clear, a join). */
  forgetGuess() {
    this.shown = null;
  }

  #counted() {
    this.count += 1;
    this.result.dataset.count = String(this.count);
  }

  #bars(top) {
    const rows = [];
    for (let i = 0; i < TOP_K; i++) {
      const item = top[i];
      const li = document.createElement("li");
      const fill = span("bar-fill");
      fill.style.width = item ? `${(item.p * 100).toFixed(1)}%` : "0%";
      const track = span("bar-track");
      track.append(fill);
      const label = item ? String(item.digit) : "·";
      li.append(span("bar-digit", label), track, span("bar-p", item ? percent(item.p) : ""));
      if (item) li.setAttribute("aria-label", `${label}: ${percent(item.p)}`);
      else li.className = "blank";
      rows.push(li);
    }
    $("bars").replaceChildren(...rows);
  }

  /** Final answers are said at once; live changes at most every ANNOUNCE_GAP_MS, the latest. */
  #announce(text, now) {
    const a = this.announcer;
    clearTimeout(a.timer);
    const wait = now ? 0 : a.last + ANNOUNCE_GAP_MS - performance.now();
    const say = () => {
      a.last = performance.now();
      if ($("announce").textContent !== text) $("announce").textContent = text;
    };
    if (wait <= 0) say();
    else a.timer = setTimeout(say, wait);
  }

  // ---- the pad ------------------------------------------------------------------------------

  padHint(empty, watching) {
    $("pad-hint").hidden = !empty;
    $("pad-hint").textContent = watching ? "Nothing drawn yet" : "Draw one digit here, large and centred";
  }

  // ---- connection ---------------------------------------------------------------------------

  connection({ state, attempt, delayMs }) {
    $("conn").dataset.state = state;
    document.body.dataset.conn = state; // lets the style mute a guess that may be stale
    const offline = state === "waiting" || (state === "connecting" && attempt > 0);
    $("conn-text").textContent = {
      connecting: attempt ? "Reconnecting…" : "Connecting…",
      open: "Connected",
      idle: "Paused",
      waiting: `Offline, retrying in ${Math.max(1, Math.round((delayMs ?? 0) / 1000))} s`,
      restarting: "Server restarting, reconnecting…", // a deploy: not an error, the drawing stays
    }[state];
    const note = offline
      ? "Offline: your drawing is kept, and the guess comes back with the connection"
      : state === "idle"
        ? "Paused: draw to reconnect"
        : "";
    if ($("pad-note").textContent !== note) $("pad-note").textContent = note;
    $("pad-note").hidden = note === "";
  }

  model(welcome) {
    const parts = [welcome.model, welcome.accelerator && welcome.accelerator.toUpperCase()];
    $("model-info").textContent = `Model ${parts.filter(Boolean).join(" on ")}`;
  }

  // ---- sharing ------------------------------------------------------------------------------

  /** The bar and controls for `room` (room.js state); `links`: {draw?, watch?} URLs. */
  room(room, links) {
    const inRoom = room.room !== null;
    const watching = room.role === "watch";
    document.body.dataset.mode = watching ? "watch" : inRoom ? "shared" : "solo";
    $("share-start").hidden = inRoom;
    $("room").hidden = !inRoom;
    for (const kind of ["draw", "watch"]) {
      $(`share-${kind}`).hidden = !links[kind];
      $(`share-${kind}-link`).value = links[kind] ?? "";
    }
    $("room-links").hidden = !links.draw && !links.watch;
    const count = room.members.length;
    const people = count === 1 ? "only you so far" : `${count} people`;
    $("room-status").textContent = watching ? `Watching (read-only), ${people}` : `Shared, ${people}`;
    $("room-leave").textContent = watching ? "Stop watching" : "Leave";
  }

  showLinks() {
    $("copy-status").textContent = "";
    const dialog = $("share-dialog");
    if (!dialog.open) dialog.showModal();
  }

  closeLinks() {
    const dialog = $("share-dialog");
    if (dialog.open) dialog.close();
  }

  copied(button, ok) {
    clearTimeout(this.copyTimer);
    for (const b of document.querySelectorAll("[data-copy]")) b.textContent = "Copy";
    button.textContent = ok ? "Copied" : "Copy";
    $("copy-status").textContent = ok ? "Link copied" : "Select the link and copy it";
    this.copyTimer = setTimeout(() => {
      button.textContent = "Copy";
      $("copy-status").textContent = "";
    }, COPIED_MS);
  }

  // ---- errors -------------------------------------------------------------------------------

  /** A message by the bottom of the screen, red; `notice` (a question, not a fault) dark. */
  error(text, { notice = false } = {}) {
    $("error").dataset.kind = notice ? "notice" : "error";
    $("error-text").textContent = text;
    $("error").hidden = false;
    clearTimeout(this.errorTimer);
    this.errorTimer = setTimeout(() => this.hideError(), ERROR_SHOW_MS);
  }

  hideError() {
    $("error").hidden = true;
  }
}

function span(className, text = "") {
  const el = document.createElement("span");
  el.className = className;
  el.textContent = text;
  return el;
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

/** An error ({code, message}) as a sentence for people, its code in brackets. */
export function describeError(e) {
  let text = ERROR_ADVICE[e.code] ?? (e.message || "The server could not handle that.");
  text = text.charAt(0).toUpperCase() + text.slice(1);
  return e.code ? `${text} (${e.code})` : text;
}
