// The drawing page: pointer and keys -> ink -> the outbox -> the server; server messages ->
// the room reducer and the view. This file wires the modules together and holds no wire
// format (protocol.js), no DOM drawing (view.js) and no rules of the ink (ink.js) itself.

import { Connection, defaultURL } from "./connection.js";
import { Ink, InkCanvas, clipToPad } from "./ink.js";
import { readInvite, shareLink, withoutInvite } from "./links.js";
import { Outbox } from "./outbox.js";
import * as protocol from "./protocol.js";
import * as rooms from "./room.js";
import { View, describeError } from "./view.js";

const $ = (id) => document.getElementById(id);
const TOP_K = 3;
// At most ~60 batches a second, even on 120-240 Hz screens: well inside the server's rate limit.
const MIN_SEND_INTERVAL_MS = 15;
const RETRY_RECOGNIZE_MS = 500;
const CLEAR_CONFIRM_MS = 4000; // a second Clear within this clears a shared drawing
const ROOM_MESSAGES = new Set(["shared", "joined", "left", "presence", "stroke", "undone", "cleared"]);
const INK_EVENTS = new Set(["joined", "stroke", "undone", "cleared"]);

class DrawingPage {
  constructor() {
    this.ink = new Ink(); // this page's own strokes
    this.pad = new InkCanvas($("pad"));
    this.conn = new Connection(defaultURL(), { topK: TOP_K, preview: true });
    this.outbox = new Outbox(this.conn, () => this.limit("max_points_per_message", 256));
    this.view = new View();
    this.room = rooms.SOLO; // the shared drawing, if any: members and their strokes
    this.invite = inviteFromURL(); // {room, token} to (re)join with when a session starts
    this.pen = { pointer: null, last: null }; // the drawing pointer and its last position
    this.frame = { requested: false, lastFlush: 0 };
    this.answer = { staleBefore: 0, wanted: false, shown: false, retry: null };
    this.debug = { lastPredictionSeq: null, lastPrediction: null, lastPointerType: null, resumed: false };
    // This tab reloaded with the room (or none) its session was in: take that session back.
    const kept = readKept();
    this.reloaded = kept && kept.room === (this.invite?.room ?? null) ? kept : null;
    if (this.reloaded) this.conn.resumeToken = this.reloaded.token;
    if (this.reloaded?.ink) this.ink.load(this.reloaded.ink); // a drawing of its own
    this.restoring = null; // the reloaded session's room, until its "joined" comes
    this.clearAsked = -Infinity; // when Clear last asked to be pressed again
  }

  get watching() {
    return this.room.role === "watch";
  }

  /** Everything on the pad: the other members' strokes, then this page's. */
  strokes() {
    return [...rooms.otherStrokes(this.room), ...this.ink.all()].filter((s) => s.length);
  }

  isEmpty() {
    return this.strokes().length === 0;
  }

  /** A limit the server announced in welcome, or `fallback`. */
  limit(name, fallback) {
    const value = this.conn.welcome?.limits?.[name];
    return Number.isFinite(value) && value > 0 ? value : fallback;
  }

  render() {
    this.pad.render(this.strokes());
  }

  requestFrame() {
    if (this.frame.requested) return;
    this.frame.requested = true;
    requestAnimationFrame((now) => {
      this.frame.requested = false;
      this.render();
      if (now - this.frame.lastFlush >= MIN_SEND_INTERVAL_MS) {
        this.frame.lastFlush = now;
        this.outbox.flush();
      } else if (this.outbox.hasPending) {
        this.requestFrame();
      }
    });
  }

  // ---- pointer input: strokes clipped at the pad's edge ------------------------------------

  onPointerDown(event) {
    if (this.pen.pointer !== null || (event.pointerType === "mouse" && event.button !== 0)) return;
    event.preventDefault();
    this.conn.wake();
    // Drawing moves on from any button the keyboard had reached: Space must not press it later.
    if (document.activeElement instanceof HTMLElement) document.activeElement.blur();
    if (this.watching) {
      this.view.error(describeError({ code: "watch_only" }));
      return;
    }
    if (!this.canBegin()) return;
    this.pen.pointer = event.pointerId;
    this.debug.lastPointerType = event.pointerType;
    this.pad.canvas.setPointerCapture(event.pointerId);
    this.pen.last = this.pad.toUnits(event);
    this.begin(this.pen.last);
  }

  onPointerMove(event) {
    if (event.pointerId !== this.pen.pointer) return;
    const events = event.getCoalescedEvents?.() ?? [];
    for (const e of events.length ? events : [event]) {
      const point = this.pad.toUnits(e);
      const inside = clipToPad(this.pen.last, point);
      this.pen.last = point;
      if (inside === null) continue; // wholly outside the pad
      const [from, to] = inside;
      if (!this.ink.current) {
        if (!this.canBegin()) continue;
        this.begin(from); // back onto the pad: a new stroke from its edge
      }
      this.add(to);
      if (to !== point) this.endStroke(); // off the pad: the stroke ends at its edge
    }
    this.requestFrame();
  }

  onPointerUp(event) {
    if (event.pointerId !== this.pen.pointer) return;
    this.pen.pointer = null;
    if (this.ink.current) this.endStroke();
  }

  /** Stay within the session's limits here, so the server never has to refuse a stroke. */
  canBegin() {
    if (this.strokes().length >= this.limit("max_strokes_per_session", Infinity)) {
      this.view.error(describeError({ code: "too_many_strokes" }));
      return false;
    }
    if (this.ink.points >= this.limit("max_points_per_session", Infinity)) {
      this.view.error(describeError({ code: "too_many_points" }));
      return false;
    }
    return true;
  }

  begin(point) {
    if (this.ink.current) this.endStroke();
    this.ink.begin(point);
    this.outbox.begin(point);
    this.inkChanged();
    this.requestFrame();
  }

  add(point) {
    const last = this.ink.current.at(-1);
    if (last !== undefined && point[0] === last[0] && point[1] === last[1]) return;
    if (this.ink.points >= this.limit("max_points_per_session", Infinity)) return;
    this.ink.add(point);
    this.outbox.add(point);
  }

  endStroke() {
    this.ink.end();
    this.outbox.flush(true);
    this.render();
  }

  // ---- commands -----------------------------------------------------------------------------

  /** This page's ink changed: a final answer asked for before no longer applies. */
  inkChanged() {
    this.answer.wanted = false;
    this.answer.shown = false;
    this.view.padHint(this.isEmpty(), this.watching);
    $("redo").disabled = !this.ink.canRedo;
  }

  /** Undo, redo and clear take effect here at once; predictions of the ink before them are
   * not shown. */
  sent(seq) {
    if (seq !== null) this.answer.staleBefore = seq;
  }

  afterTakingBack() {
    this.view.forgetGuess();
    this.inkChanged();
    this.render();
    if (this.isEmpty()) this.showEmpty();
  }

  undo() {
    if (this.watching) return;
    const unsent = this.ink.current !== null && this.outbox.unsent; // the server has not seen it
    this.pen.pointer = null;
    this.outbox.drop();
    if (!this.ink.undo()) return;
    this.afterTakingBack();
    if (!unsent) this.sent(this.conn.send(protocol.undo()));
  }

  redo() {
    if (this.watching || !this.ink.canRedo) return;
    if (this.ink.current) {
      this.pen.pointer = null;
      this.endStroke();
    }
    const stroke = this.ink.redo();
    this.outbox.sendStroke(stroke); // offline, the replay on reconnect brings it
    this.inkChanged();
    this.render();
  }

  clear() {
    if (this.watching) return;
    // In a shared drawing Clear takes the others' ink too, and no undo brings it back: when
    // someone else has drawn, the first press asks and a second one soon after clears.
    const now = performance.now();
    if (rooms.otherStrokes(this.room).length && now - this.clearAsked > CLEAR_CONFIRM_MS) {
      this.clearAsked = now;
      this.view.error("This clears everyone's drawing: press Clear again to do it.", { notice: true });
      return;
    }
    this.clearAsked = -Infinity;
    this.view.hideError();
    this.pen.pointer = null;
    this.outbox.drop();
    this.ink.clear();
    this.onRoomMessage({ type: "cleared", by: this.room.member }); // everyone's ink, at once
    this.afterTakingBack();
    this.sent(this.conn.send(protocol.clear()));
  }

  recognize() {
    if (this.watching) return;
    if (this.ink.current) {
      this.pen.pointer = null;
      this.endStroke();
    }
    if (this.isEmpty()) {
      this.view.empty("Nothing to recognize yet: draw a digit first");
      return;
    }
    this.answer.wanted = true;
    if (this.conn.send(protocol.recognize()) === null) {
      this.view.note("The final answer comes once the connection is back");
    }
  }

  /** The server was too busy to answer `recognize`: ask again shortly, if still wanted. */
  retryRecognize() {
    clearTimeout(this.answer.retry);
    this.answer.retry = setTimeout(() => {
      if (this.answer.wanted && !this.answer.shown) this.conn.send(protocol.recognize());
    }, RETRY_RECOGNIZE_MS);
  }

  /**
   * Enter means "recognize" unless a button has the focus (then it presses that button, as
   * everywhere); Space presses only a focused button, and buttons take the focus only from
   * the keyboard (see start), so after a click Enter still recognizes. The share dialog,
   * text fields and "How it works" keep their own keys.
   */
  onKeyDown(event) {
    this.conn.wake();
    const target = event.target instanceof Element ? event.target : null;
    if (target?.closest("dialog, input, textarea, summary, a")) return;
    const key = event.key.toLowerCase();
    const command = event.ctrlKey || event.metaKey;
    if (key === "enter" && target?.closest("button")) {
      return; // the browser presses the focused button
    } else if (key === "enter") {
      event.preventDefault();
      if (!event.repeat) this.recognize();
    } else if (key === " " && !target?.closest("button")) {
      event.preventDefault();
    } else if ((key === "delete" || key === "backspace") && !event.repeat) {
      event.preventDefault();
      this.clear();
    } else if (command && (key === "y" || (key === "z" && event.shiftKey))) {
      event.preventDefault();
      this.redo();
    } else if (command && key === "z") {
      event.preventDefault();
      this.undo();
    }
  }

  // ---- server messages ----------------------------------------------------------------------

  onMessage(message) {
    if (ROOM_MESSAGES.has(message.type)) this.onRoomMessage(message);
    else if (message.type === "prediction") this.onPrediction(message);
    else if (message.type === "error") this.onError(message);
  }

  onPrediction(p) {
    this.debug.lastPredictionSeq = p.seq;
    this.debug.lastPrediction = p;
    if (p.seq !== null && p.seq < this.answer.staleBefore) return;
    // A room's live prediction may arrive after a final answer of the same ink: keep the final.
    if (!p.final && this.answer.shown) return;
    if (p.empty || this.isEmpty()) {
      this.view.empty(p.final ? "Nothing to recognize yet: draw a digit first" : this.emptyText(), {
        counted: true,
      });
      return;
    }
    this.answer.shown = p.final;
    this.view.prediction(p);
  }

  onError(error) {
    if (error.code === "idle_timeout") return; // a pause, shown by the pill and the pad
    this.view.error(describeError(error));
    if (error.code === "overloaded" && this.answer.wanted) this.retryRecognize();
    if (error.code === "room_refused" || error.code === "room_full") this.joinRefused();
  }

  emptyText() {
    return this.watching ? "Waiting for someone to draw" : "Draw a digit to see a guess";
  }

  showEmpty() {
    this.view.empty(this.emptyText());
  }

  onWelcome(welcome) {
    this.view.model(welcome);
    this.view.hideError();
    this.debug.resumed = welcome.resumed;
    const reloaded = this.reloaded;
    this.reloaded = null;
    if (welcome.resumed && reloaded?.room) {
      this.restoring = reloaded; // "joined" follows, with the room's ink and our strokes in it
      writeKept({ ...reloaded, token: this.conn.resumeToken });
      return;
    }
    this.keep();
    if (welcome.resumed) {
      if (this.room.room) return; // the room's state ("joined") follows
      if (!this.inSync(welcome)) {
        this.conn.send(protocol.clear()); // the server missed some of the drawing: send it all
        this.replay();
      } else if (this.answer.wanted && !this.ink.current) {
        this.conn.send(protocol.recognize());
      }
      return;
    }
    if (this.invite) {
      this.conn.send(protocol.join(this.invite));
      return;
    }
    if (this.room.room) this.leaveRoom(); // the room went with the old session
    this.replay();
    if (this.isEmpty()) this.showEmpty();
  }

  /** Whether a resumed session holds exactly the page's drawing. */
  inSync(welcome) {
    return (
      !this.ink.current && welcome.strokes === this.ink.strokes.length && welcome.points === this.ink.points
    );
  }

  /** A new session knows nothing: send the whole drawing, then show only its answer. */
  replay() {
    this.outbox.replay(this.ink);
    if (this.answer.wanted && !this.ink.current) this.conn.send(protocol.recognize());
    this.answer.staleBefore = this.conn.seq;
  }

  // ---- shared drawings ----------------------------------------------------------------------

  onRoomMessage(message) {
    const context = { me: this.conn.welcome?.session ?? null, token: this.invite?.token };
    const { state, ink } = rooms.reduce(this.room, message, context);
    this.room = state;
    this.applyInk(ink);
    if (message.type === "shared") {
      this.invite = { room: message.room, token: message.drawToken };
      // The address becomes the drawing link, as it is for those who join: a reload or a
      // bookmark comes back to the room.
      window.history.replaceState(null, "", shareLink(window.location.href, message.room, message.drawToken));
      this.view.hideError();
      this.view.showLinks();
    } else if (message.type === "joined") {
      if (this.restoring?.room === message.room) {
        this.room = { ...this.room, tokens: { ...this.restoring.tokens, ...this.room.tokens } };
      }
      this.restoring = null;
      this.view.hideError();
      this.pen.pointer = null;
      this.outbox.drop();
      this.answer.staleBefore = this.conn.seq; // what this session predicted before is not the room's
      this.view.forgetGuess();
    } else if (message.type === "left") {
      this.forgetInvite();
      this.conn.send(protocol.clear()); // the server kept the room's ink as ours: send it in page order
      this.replay();
    }
    if (INK_EVENTS.has(message.type)) {
      this.answer.shown = false;
      this.view.padHint(this.isEmpty(), this.watching);
      this.requestFrame();
      if (message.type !== "stroke" && this.isEmpty()) this.showEmpty();
    }
    this.view.room(this.room, this.links());
    if (!INK_EVENTS.has(message.type) || message.type === "joined") this.keep();
  }

  /** What a reload of this tab needs to take the session back (see readKept); `ink` is
   * written only as the page goes (a room gives its strokes back by itself). */
  keep(ink = null) {
    const token = this.conn.resumeToken;
    if (token) writeKept({ token, room: this.room.room, tokens: this.room.tokens, ink });
  }

  applyInk(action) {
    if (action === null) return;
    if (action.load) this.ink.load(action.load);
    if (action.append) this.ink.append(action.append);
    if (action.clear) this.ink.clear(action.clear);
    this.inkChanged();
  }

  startShare() {
    if (this.room.room) return;
    if (this.conn.send(protocol.share()) === null) {
      this.view.error("Sharing needs the connection: try again once connected.");
    }
  }

  /** Back to drawing alone (the session was lost); the other members' strokes become ours. */
  leaveRoom() {
    const { state, ink } = rooms.leave(this.room);
    this.room = state;
    this.applyInk(ink);
    this.forgetInvite();
    this.view.room(this.room, this.links());
    this.keep();
  }

  /** A join (by link, or again after a lost session) was refused: draw alone. */
  joinRefused() {
    if (this.room.room) this.leaveRoom();
    this.forgetInvite();
    this.view.room(this.room, this.links());
    this.replay();
  }

  forgetInvite() {
    this.invite = null;
    if (window.location.hash) window.history.replaceState(null, "", withoutInvite(window.location.href));
  }

  links() {
    const { room, tokens } = this.room;
    if (room === null) return {};
    const here = window.location.href;
    return Object.fromEntries(Object.entries(tokens).map(([kind, t]) => [kind, shareLink(here, room, t)]));
  }

  async copyLink(button) {
    const input = $(button.dataset.copy);
    input.focus({ preventScroll: true });
    input.select();
    let ok = false;
    try {
      await navigator.clipboard.writeText(input.value);
      ok = true;
    } catch {
      ok = document.execCommand("copy");
    }
    button.focus({ preventScroll: true });
    this.view.copied(button, ok);
  }

  // ---- start --------------------------------------------------------------------------------

  start() {
    const canvas = this.pad.canvas;
    const on = (target, type, handler) => target.addEventListener(type, handler.bind(this));
    on(canvas, "pointerdown", this.onPointerDown);
    on(canvas, "pointermove", this.onPointerMove);
    on(canvas, "pointerup", this.onPointerUp);
    on(canvas, "pointercancel", this.onPointerUp);
    on(canvas, "lostpointercapture", this.onPointerUp);
    canvas.addEventListener("contextmenu", (e) => e.preventDefault());
    on(document, "keydown", this.onKeyDown);
    // A button pressed with a pointer does not take the focus, so no later Enter or Space
    // presses it again by surprise (Clear twice wiped new drawings). Tab still reaches it.
    document.addEventListener("mousedown", (e) => {
      if (e.target instanceof Element && e.target.closest("button") && !e.target.closest("dialog")) {
        e.preventDefault();
      }
    });
    on($("undo"), "click", this.undo);
    on($("redo"), "click", this.redo);
    on($("clear"), "click", this.clear);
    on($("recognize"), "click", this.recognize);
    on($("share-start"), "click", this.startShare);
    $("room-links").addEventListener("click", () => this.view.showLinks());
    $("room-leave").addEventListener("click", () => this.conn.send(protocol.leave()));
    $("share-done").addEventListener("click", () => this.view.closeLinks());
    // The dialog hands the focus back to Share, which sharing hid: from the keyboard, the
    // focus goes to Links instead (the place to come back to it), not to the top of the page.
    let keyboard = false;
    document.addEventListener("keydown", () => (keyboard = true), true);
    document.addEventListener("pointerdown", () => (keyboard = false), true);
    $("share-dialog").addEventListener("close", () => {
      if (keyboard && !$("room-links").hidden) $("room-links").focus();
    });
    if (/Mac|iPhone|iPad/.test(navigator.platform)) {
      $("undo").querySelector("kbd").textContent = "⌘Z";
      $("redo").querySelector("kbd").textContent = "⇧⌘Z";
    }
    $("error-close").addEventListener("click", () => this.view.hideError());
    for (const button of document.querySelectorAll("[data-copy]")) {
      button.addEventListener("click", () => this.copyLink(button));
    }
    window.addEventListener("hashchange", () => {
      const next = inviteFromURL();
      if (next && (next.room !== this.invite?.room || next.token !== this.invite?.token))
        window.location.reload();
    });

    new ResizeObserver(() => this.pad.fit() && this.render()).observe(canvas);
    this.pad.fit();
    this.render(); // a drawing taken back after a reload
    this.view.room(this.room, this.links());
    this.inkChanged();
    this.showEmpty();

    this.conn.addEventListener("state", ({ detail }) => this.view.connection(detail));
    this.conn.addEventListener("welcome", ({ detail }) => this.onWelcome(detail));
    this.conn.addEventListener("message", ({ detail }) => this.onMessage(detail));
    window.addEventListener("pagehide", () => this.keep(this.room.room ? null : this.ink.all()));
    window.addEventListener("online", () => {
      if (!this.conn.ws && !this.conn.idle) this.conn.connect();
    });
    this.conn.connect();
  }
}

// A reload takes this tab's session back (its room, and the strokes it drew there, which stay
// its own to undo; or a drawing of its own) instead of leaving a member nobody sees in the
// room for resume_grace_s: the resume token, the room and its links, and a solo drawing as the
// page goes, are kept in sessionStorage, which is this tab's alone and goes with it. Without
// storage (a policy, a private mode) a reload starts a new session.
const KEPT = "digits.session";

/** {token, room: id or null, tokens: {draw?, watch?}, ink: strokes or null} of this tab's
 * session, or null. */
function readKept() {
  try {
    const kept = JSON.parse(window.sessionStorage.getItem(KEPT) ?? "null");
    if (typeof kept?.token !== "string") return null;
    const room = typeof kept.room === "string" ? kept.room : null;
    const ink = room === null && isStrokes(kept.ink) ? kept.ink : null;
    return { token: kept.token, room, tokens: kept.tokens ?? {}, ink };
  } catch {
    return null;
  }
}

function isStrokes(value) {
  const isPoint = (p) => Array.isArray(p) && Number.isFinite(p[0]) && Number.isFinite(p[1]);
  return Array.isArray(value) && value.every((s) => Array.isArray(s) && s.every(isPoint));
}

function writeKept(value) {
  try {
    window.sessionStorage.setItem(KEPT, JSON.stringify(value));
  } catch {
    // no storage here: nothing to take back after a reload
  }
}

/** The shared drawing this page's address invites to, if any (an old-style link is rewritten). */
function inviteFromURL() {
  const { invite, rewritten } = readInvite(window.location.href);
  if (rewritten) window.history.replaceState(null, "", rewritten);
  return invite;
}

const page = new DrawingPage();
page.start();
// Hooks for the browser tests, only when the page is opened with ?test.
if (new URLSearchParams(window.location.search).has("test")) window.digits = page;
