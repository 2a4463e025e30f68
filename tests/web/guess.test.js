// web/guess.js: honest percentages, a steady big digit, and the words for each verdict.
import assert from "node:assert/strict";
import { test } from "node:test";

import { describe, percent, steadyDigit } from "../../web/guess.js";

test("percentages are whole and never claim certainty either way", () => {
  assert.equal(percent(1), ">99%");
  assert.equal(percent(0.996), ">99%");
  assert.equal(percent(0.994), "99%");
  assert.equal(percent(0.5), "50%");
  assert.equal(percent(0.006), "1%");
  assert.equal(percent(0.004), "<1%");
  assert.equal(percent(0), "<1%");
});

const top = (...pairs) => pairs.map(([digit, p]) => ({ digit, p }));

test("the shown digit gives way only to a clearly better guess", () => {
  assert.equal(steadyDigit(null, top([7, 0.4], [2, 0.35])), 7);
  assert.equal(steadyDigit(7, top([2, 0.5], [7, 0.4])), 7); // 0.1 better: not enough
  assert.equal(steadyDigit(7, top([2, 0.7], [7, 0.2])), 2);
  assert.equal(steadyDigit(7, top([2, 0.3], [1, 0.2], [3, 0.1])), 2); // 7 fell out of the top
  assert.equal(steadyDigit(7, top([2, 0.5], [7, 0.4]), true), 2); // a final answer is the best guess
  assert.equal(steadyDigit(7, []), null);
});

test("each verdict has its own words, and only finals and verdicts are announced", () => {
  const guess = (verdict, final = false) => ({ verdict, final, top: top([3, 0.9], [8, 0.05]) });
  assert.deepEqual(describe(guess("digit"), 3), {
    digit: "3",
    text: "Looks like 3, 90% sure",
    announce: "Looks like 3",
  });
  assert.deepEqual(describe(guess("digit", true), 3), {
    digit: "3",
    text: "Final answer: 3 (90%)",
    announce: "Final answer: 3",
  });
  assert.equal(describe(guess("unsure"), 3).text, "Keep drawing…");
  assert.match(describe(guess("unsure", true), 3).text, /^Maybe 3 \(90%\): keep drawing/);
  const not = describe(guess("not_digit", true), 3);
  assert.deepEqual(not, {
    digit: "?",
    text: "That doesn't look like a digit",
    announce: "That doesn't look like a digit",
  });
  // While drawing, "not a digit" may be the first stroke of one: the words say "yet".
  assert.equal(describe(guess("not_digit"), 3).text, "Doesn't look like a digit yet");
});
