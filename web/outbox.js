// Streaming the page's ink to the server: points wait here and leave in batches; a stroke's
// first batch is its "start", the pen going up sends the rest with "end"; after a lost session
// the whole drawing is sent again (replay).
// Belongs here: what has been sent of the open stroke. Not here: the ink itself (ink.js).

import * as protocol from "./protocol.js";

export class Outbox {
  /** `conn`: the Connection; `maxPoints()`: the server's points-per-message limit. */
  constructor(conn, maxPoints) {
    this.conn = conn;
    this.maxPoints = maxPoints;
    this.started = false; // the server has seen the open stroke's start
    this.pending = []; // points of the open stroke not sent yet
  }

  /** A new stroke begins at `point` (sent with the next flush). */
  begin(point) {
    this.started = false;
    this.pending = [point];
  }

  add(point) {
    this.pending.push(point);
  }

  get hasPending() {
    return this.pending.length > 0;
  }

  /** Whether the open stroke is still unknown to the server (undo needs to tell it nothing). */
  get unsent() {
    return !this.started;
  }

  /** Forget the open stroke's unsent points (it was undone or cleared here). */
  drop() {
    this.started = false;
    this.pending = [];
  }

  /** Send what is pending; with `end`, the stroke ends too. Offline, nothing is sent: the
   * whole drawing is replayed on reconnect. */
  flush(end = false) {
    const batch = this.pending;
    this.pending = [];
    if (!this.conn.ready) return;
    if (!this.started) {
      if (batch.length === 0 && !end) return;
      this.started = true;
      this.#send(batch, { start: true, end });
    } else if (batch.length || end) {
      this.#send(batch, { start: false, end });
    }
    if (end) this.started = false;
  }

  /** A whole finished stroke at once (redo). */
  sendStroke(points) {
    this.#send(points, { start: true, end: true });
  }

  /** A new session knows nothing: send every stroke again, the one being drawn included. */
  replay(ink) {
    this.drop();
    for (const stroke of ink.strokes) this.#send(stroke, { start: true, end: true });
    if (ink.current) {
      this.#send(ink.current, { start: true, end: false });
      this.started = true;
    }
  }

  /** One stroke's points as start/points/end messages within the per-message limit. */
  #send(points, { start, end }) {
    const size = this.maxPoints();
    let i = 0;
    if (start) {
      this.conn.send(protocol.start(points.slice(0, size)));
      i = size;
    }
    for (; i < points.length; i += size) {
      this.conn.send(protocol.points(points.slice(i, i + size)));
    }
    if (end) this.conn.send(protocol.end());
  }
}
