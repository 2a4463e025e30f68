// web/room.js: the room reducer, message by message, and what it does to the page's own ink.
import assert from "node:assert/strict";
import { test } from "node:test";

import { SOLO, leave, otherStrokes, reduce } from "../../web/room.js";

const joined = {
  type: "joined",
  room: "R",
  role: "draw",
  member: "me",
  members: [
    { member: "a", role: "draw" },
    { member: "me", role: "draw" },
  ],
  strokes: [
    { id: 1, author: "a", points: [[0, 0]], open: false },
    { id: 2, author: "me", points: [[5, 5]], open: false },
    { id: 3, author: "a", points: [[9, 9]], open: true },
  ],
};

test("joining loads our strokes into the ink and keeps the others' apart", () => {
  const { state, ink } = reduce(SOLO, joined, { me: "me", token: "T" });
  assert.deepEqual(ink, { load: [[[5, 5]]] });
  assert.deepEqual(otherStrokes(state), [[[0, 0]], [[9, 9]]]);
  assert.deepEqual(state.tokens, { draw: "T" });
  assert.equal(SOLO.others.size, 0); // the reducer never changes a state it was given
});

test("strokes, undo and presence of others change the state; our own echoes do not", () => {
  let { state } = reduce(SOLO, joined, { me: "me" });
  const before = state;
  state = reduce(state, {
    type: "stroke",
    event: "points",
    stroke: 3,
    author: "a",
    points: [[10, 10]],
  }).state;
  assert.deepEqual(state.others.get(3), {
    author: "a",
    points: [
      [9, 9],
      [10, 10],
    ],
    open: true,
  });
  assert.deepEqual(before.others.get(3).points, [[9, 9]]);
  state = reduce(state, { type: "stroke", event: "end", stroke: 3, author: "a", points: [] }).state;
  assert.equal(state.others.get(3).open, false);
  assert.equal(
    reduce(state, { type: "stroke", event: "start", stroke: 4, author: "me", points: [] }).state,
    state,
  );
  assert.equal(reduce(state, { type: "undone", stroke: 2, author: "me" }).state, state);
  state = reduce(state, { type: "undone", stroke: 1, author: "a" }).state;
  assert.deepEqual([...state.others.keys()], [3]);
  state = reduce(state, { type: "presence", event: "joined", member: "w", role: "watch" }).state;
  state = reduce(state, { type: "presence", event: "left", member: "a", role: "draw" }).state;
  assert.deepEqual(
    state.members.map((m) => m.member),
    ["me", "w"],
  );
});

test("a clear by another member clears our ink too, keeping open strokes emptied", () => {
  const { state } = reduce(SOLO, joined, { me: "me" });
  const theirs = reduce(state, { type: "cleared", by: "a" });
  assert.deepEqual(theirs.ink, { clear: { keepOpen: true } });
  assert.deepEqual([...theirs.state.others.entries()], [[3, { author: "a", points: [], open: true }]]);
  const ours = reduce(state, { type: "cleared", by: "me" });
  assert.equal(ours.ink, null); // cleared here already
  assert.equal(ours.state.others.size, 1);
});

test("sharing makes a room of one with both links; leaving hands the others' strokes over", () => {
  const shared = reduce(SOLO, { type: "shared", room: "R", drawToken: "d", watchToken: "w" }, { me: "me" });
  assert.deepEqual(shared.state.tokens, { draw: "d", watch: "w" });
  assert.deepEqual(shared.state.members, [{ member: "me", role: "draw" }]);
  const { state } = reduce(SOLO, joined, { me: "me" });
  assert.deepEqual(leave(state), { state: SOLO, ink: { append: [[[0, 0]], [[9, 9]]] } });
  assert.deepEqual(reduce(state, { type: "left", room: "R" }), leave(state));
});
