// web/outbox.js: strokes leave as start/points/end within the per-message limit, and a new
// session gets the whole drawing again.
import assert from "node:assert/strict";
import { test } from "node:test";

import { Ink } from "../../web/ink.js";
import { Outbox } from "../../web/outbox.js";

class FakeConnection {
  ready = true;
  sent = [];
  send(message) {
    this.sent.push(message);
    return this.sent.length;
  }
}

test("a stroke streams as start, points and end, split at the limit", () => {
  const conn = new FakeConnection();
  const outbox = new Outbox(conn, () => 2);
  outbox.begin([0, 0]);
  outbox.add([1, 1]);
  outbox.add([2, 2]);
  outbox.flush();
  outbox.add([3, 3]);
  outbox.flush(true);
  assert.deepEqual(conn.sent, [
    {
      type: "start",
      points: [
        [0, 0],
        [1, 1],
      ],
    },
    { type: "points", points: [[2, 2]] },
    { type: "points", points: [[3, 3]] },
    { type: "end" },
  ]);
});

test("offline nothing is sent; the replay sends every stroke, the open one left open", () => {
  const conn = new FakeConnection();
  const outbox = new Outbox(conn, () => 10);
  conn.ready = false;
  const ink = new Ink();
  ink.begin([0, 0]);
  outbox.begin([0, 0]);
  outbox.flush(true);
  ink.begin([5, 5]);
  assert.deepEqual(conn.sent, []);
  conn.ready = true;
  outbox.replay(ink);
  assert.deepEqual(conn.sent, [
    { type: "start", points: [[0, 0]] },
    { type: "end" },
    { type: "start", points: [[5, 5]] },
  ]);
  assert.equal(outbox.unsent, false);
});
