// web/protocol.js: every message the page builds, and what it reads from the server.
import assert from "node:assert/strict";
import { test } from "node:test";

import * as protocol from "../../web/protocol.js";

test("client messages are built with the documented fields", () => {
  assert.deepEqual(JSON.parse(protocol.encode(protocol.hello({ topK: 3, preview: true }))), {
    type: "hello",
    version: 1,
    top_k: 3,
    preview: true,
  });
  assert.equal(protocol.hello({ topK: 3, preview: false, resume: "t" }).resume, "t");
  assert.deepEqual(JSON.parse(protocol.encode(protocol.start([[1, 2]]), 7)), {
    type: "start",
    points: [[1, 2]],
    seq: 7,
  });
  assert.deepEqual(protocol.join({ room: "r", token: "t" }), { type: "join", room: "r", token: "t" });
  for (const build of ["end", "undo", "clear", "recognize", "share", "leave"]) {
    assert.deepEqual(protocol[build](), { type: build });
  }
});

test("a prediction without a verdict (an older server) counts as a digit", () => {
  const p = protocol.parse(
    JSON.stringify({ type: "prediction", seq: 3, final: false, empty: false, top: [{ digit: 4, p: 0.9 }] }),
  );
  assert.equal(p.verdict, "digit");
  assert.deepEqual(p.top, [{ digit: 4, p: 0.9 }]);
  const unsure = protocol.parse(
    JSON.stringify({
      type: "prediction",
      seq: null,
      final: true,
      empty: false,
      top: [{ digit: 4, p: 0.5 }],
      verdict: "unsure",
    }),
  );
  assert.equal(unsure.verdict, "unsure");
  assert.equal(unsure.seq, null);
  const empty = protocol.parse(
    JSON.stringify({ type: "prediction", seq: 1, final: false, empty: true, top: [] }),
  );
  assert.equal(empty.verdict, null);
});

test("room messages are read into the page's shape; points lose their timestamps", () => {
  const joined = protocol.parse(
    JSON.stringify({
      type: "joined",
      room: "R",
      role: "watch",
      member: "me",
      members: [{ member: "a", role: "draw" }],
      strokes: [{ id: 1, author: "a", points: [[1, 2, 99]], open: true }],
    }),
  );
  assert.deepEqual(joined.strokes, [{ id: 1, author: "a", points: [[1, 2]], open: true }]);
  assert.equal(joined.role, "watch");
  const shared = protocol.parse(
    JSON.stringify({ type: "shared", room: "R", draw_token: "d", watch_token: "w" }),
  );
  assert.deepEqual(shared, { type: "shared", room: "R", drawToken: "d", watchToken: "w" });
});

test("malformed and unknown frames are ignored, never thrown", () => {
  for (const frame of [
    "{",
    "[]",
    "null",
    '{"type": 3}',
    '{"type": "nope"}',
    '{"type": "shared", "room": 5}',
  ]) {
    assert.equal(protocol.parse(frame), null, frame);
  }
  assert.equal(protocol.parse(new ArrayBuffer(3)), null);
});
