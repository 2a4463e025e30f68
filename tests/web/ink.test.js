// web/ink.js: the ink's invariants (points counted, one open stroke, redo history) and clipping.
import assert from "node:assert/strict";
import { test } from "node:test";

import { Ink, UNITS, clipToPad } from "../../web/ink.js";

test("undo and redo move whole strokes and keep the point count", () => {
  const ink = new Ink();
  ink.begin([0, 0]);
  ink.add([1, 1]);
  ink.begin([5, 5]); // ends the first stroke
  assert.deepEqual([ink.strokes.length, ink.points], [1, 3]);
  assert.equal(ink.undo(), true); // the open stroke
  assert.equal(ink.undo(), true);
  assert.equal(ink.undo(), false);
  assert.deepEqual([ink.points, ink.isEmpty, ink.canRedo], [0, true, true]);
  assert.deepEqual(ink.redo(), [
    [0, 0],
    [1, 1],
  ]);
  assert.deepEqual(ink.redo(), [[5, 5]]);
  assert.equal(ink.redo(), null);
  assert.deepEqual([ink.strokes.length, ink.points], [2, 3]);
  ink.undo();
  ink.begin([7, 7]); // new ink: nothing to redo any more
  assert.equal(ink.canRedo, false);
});

test("clear, load and append keep the count; a kept open stroke goes on emptied", () => {
  const ink = new Ink();
  ink.load([
    [
      [1, 1],
      [2, 2],
    ],
    [],
  ]);
  assert.deepEqual([ink.strokes.length, ink.points], [1, 2]);
  ink.begin([3, 3]);
  ink.clear({ keepOpen: true });
  assert.deepEqual([ink.strokes.length, ink.points, ink.current], [0, 0, []]);
  ink.add([4, 4]);
  ink.append([[[9, 9, 123]]]);
  assert.deepEqual(ink.all(), [[[9, 9]], [[4, 4]]]);
  assert.equal(ink.points, 2);
  ink.clear();
  assert.equal(ink.current, null);
});

test("segments are clipped to the pad; wholly outside ones vanish", () => {
  assert.deepEqual(clipToPad([500, 500], [500, 1500]), [
    [500, 500],
    [500, UNITS],
  ]);
  assert.deepEqual(clipToPad([1500, 500], [500, 500]), [
    [UNITS, 500],
    [500, 500],
  ]);
  assert.deepEqual(clipToPad([-100, 500], [1100, 500]), [
    [0, 500],
    [UNITS, 500],
  ]);
  assert.deepEqual(clipToPad([10, 10], [20, 20]), [
    [10, 10],
    [20, 20],
  ]);
  assert.equal(clipToPad([-10, -10], [-5, 2000]), null);
  assert.equal(clipToPad([1100, 1100], [1200, 900]), null);
});
