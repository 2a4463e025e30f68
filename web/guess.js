// What the page says about a prediction, honestly: the verdict in words, a big digit that does
// not flicker, probabilities that never claim certainty. Pure functions; no DOM.

/** A shown digit gives way only to a guess at least this much more probable. */
export const SWITCH_MARGIN = 0.2;

/** A probability as people read it: whole percents, never "100%" nor "0%". */
export function percent(p) {
  const v = Math.max(0, Math.min(1, Number(p) || 0)) * 100;
  if (v >= 99.5) return ">99%";
  if (v < 0.5) return "<1%";
  return `${Math.round(v)}%`;
}

/**
 * The digit to show after a prediction's `top` (most probable first): the best guess, except
 * that a digit already shown stays until the new guess is clearly better. A final answer is
 * always the model's best guess.
 */
export function steadyDigit(shown, top, final = false) {
  const best = top[0];
  if (best === undefined) return null;
  if (final || shown === null || best.digit === shown) return best.digit;
  const stillP = top.find((g) => g.digit === shown)?.p ?? 0;
  return best.p - stillP >= SWITCH_MARGIN ? best.digit : shown;
}

/**
 * What the panel shows for a non-empty prediction, given the digit to show:
 * {digit: the big character, text: the line beside it, announce: what a screen reader hears
 * (null: nothing new to say)}.
 */
export function describe(prediction, digit) {
  const { final, verdict, top } = prediction;
  const p = percent(top.find((g) => g.digit === digit)?.p ?? 0);
  if (verdict === "not_digit") {
    // While drawing, part of a digit can look like nothing yet (the bar of a 7): say "yet".
    const text = final ? "That doesn't look like a digit" : "Doesn't look like a digit yet";
    return { digit: "?", text, announce: text };
  }
  if (verdict === "unsure") {
    const text = final ? `Maybe ${digit} (${p}): keep drawing…` : "Keep drawing…";
    return { digit: String(digit), text, announce: final ? text : "Keep drawing" };
  }
  if (final) {
    return {
      digit: String(digit),
      text: `Final answer: ${digit} (${p})`,
      announce: `Final answer: ${digit}`,
    };
  }
  return { digit: String(digit), text: `Looks like ${digit}, ${p} sure`, announce: `Looks like ${digit}` };
}
