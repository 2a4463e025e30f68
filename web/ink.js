// The drawing: strokes in logical units, clipped to the pad, and how they look on a canvas.
// No network and no DOM events here; app.js feeds points in and outbox.js sends them.

/** Logical units across the square canvas, whatever its size in CSS pixels. */
export const UNITS = 1000;
/** Pen width in logical units: thick, like the ink the model was trained on. */
export const PEN_WIDTH = 46;

/**
 * This page's own strokes. Invariants kept here and nowhere else: at most one open stroke
 * (`current`), `points` counts every point of every stroke, and the redo history holds only
 * strokes undone since the last new stroke or clear.
 */
export class Ink {
  #strokes = []; // finished strokes, each an array of [x, y]
  #current = null; // the stroke being drawn, or null
  #points = 0;
  #undone = []; // strokes taken back by undo, most recent last: what redo brings back

  /** Finished strokes (read-only). */
  get strokes() {
    return this.#strokes;
  }

  /** The stroke being drawn (read-only), or null. */
  get current() {
    return this.#current;
  }

  /** Points in all strokes, the open one included. */
  get points() {
    return this.#points;
  }

  get isEmpty() {
    return this.#points === 0;
  }

  get canRedo() {
    return this.#undone.length > 0;
  }

  /** All strokes, the one being drawn included. */
  all() {
    return this.#current ? [...this.#strokes, this.#current] : this.#strokes;
  }

  /** Start a new stroke (ending any open one); new ink forgets the redo history. */
  begin(point) {
    this.end();
    this.#current = [point];
    this.#points += 1;
    this.#undone = [];
  }

  add(point) {
    if (!this.#current) return;
    this.#current.push(point);
    this.#points += 1;
  }

  end() {
    if (!this.#current) return;
    if (this.#current.length) this.#strokes.push(this.#current);
    this.#current = null;
  }

  /** Take back the last stroke (finishing any stroke in progress first); false if none. */
  undo() {
    this.end();
    const last = this.#strokes.pop();
    if (last === undefined) return false;
    this.#points -= last.length;
    this.#undone.push(last);
    return true;
  }

  /** Bring back the stroke undone last, as a finished stroke; returns it, or null. */
  redo() {
    const stroke = this.#undone.pop();
    if (stroke === undefined) return null;
    this.end();
    this.#strokes.push(stroke);
    this.#points += stroke.length;
    return stroke;
  }

  /** Remove everything. With `keepOpen`, a stroke being drawn stays open, emptied (another
   * member cleared a shared drawing mid-stroke: the next points continue it). */
  clear({ keepOpen = false } = {}) {
    this.#strokes = [];
    this.#current = keepOpen && this.#current ? [] : null;
    this.#points = 0;
    this.#undone = [];
  }

  /** Replace everything with these finished strokes (a shared drawing's state). */
  load(strokes) {
    this.clear();
    this.append(strokes);
  }

  /** Add finished strokes before any open one (other members' strokes, on leaving a room). */
  append(strokes) {
    for (const stroke of strokes) {
      if (!stroke.length) continue;
      this.#strokes.push(stroke.map((p) => [p[0], p[1]]));
      this.#points += stroke.length;
    }
  }
}

/**
 * The part of the segment a -> b inside the pad (0..UNITS square), as [from, to], or null when
 * none of it is. Ink the person cannot see never reaches the model.
 */
export function clipToPad(a, b) {
  let t0 = 0;
  let t1 = 1;
  const dx = b[0] - a[0];
  const dy = b[1] - a[1];
  // Liang-Barsky: each edge narrows the [t0, t1] range of the segment that lies inside.
  for (const [q, d] of [
    [a[0], -dx],
    [UNITS - a[0], dx],
    [a[1], -dy],
    [UNITS - a[1], dy],
  ]) {
    if (d === 0) {
      if (q < 0) return null;
    } else {
      const t = q / d;
      if (d < 0) t0 = Math.max(t0, t);
      else t1 = Math.min(t1, t);
    }
  }
  if (t0 > t1) return null;
  const at = (t) => [edge(a[0] + t * dx), edge(a[1] + t * dy)];
  return [t0 === 0 ? a : at(t0), t1 === 1 ? b : at(t1)];
}

/** Inside the pad, rounded to 0.1 unit as pointer positions are. */
function edge(v) {
  return Math.min(UNITS, Math.max(0, Math.round(v * 10) / 10));
}

/** Paints ink on a canvas sized to its CSS box and the device pixel ratio. */
export class InkCanvas {
  constructor(canvas) {
    this.canvas = canvas;
    this.ctx = canvas.getContext("2d");
    this.cssSize = 0;
  }

  /** Match the backing store to the element's size; returns true if it changed. */
  fit() {
    const rect = this.canvas.getBoundingClientRect();
    const dpr = window.devicePixelRatio || 1;
    const width = Math.max(1, Math.round(rect.width * dpr));
    const height = Math.max(1, Math.round(rect.height * dpr));
    this.cssSize = rect.width;
    if (this.canvas.width === width && this.canvas.height === height) return false;
    this.canvas.width = width;
    this.canvas.height = height;
    return true;
  }

  /** Logical coordinates of a pointer event's position (rounded to 0.1 unit). */
  toUnits(event) {
    const rect = this.canvas.getBoundingClientRect();
    const k = UNITS / rect.width;
    const round = (v) => Math.round(v * 10) / 10;
    return [round((event.clientX - rect.left) * k), round((event.clientY - rect.top) * k)];
  }

  /** Paint these strokes (arrays of [x, y] in logical units), and nothing else. */
  render(strokes) {
    const { ctx, canvas } = this;
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    const k = canvas.width / UNITS;
    ctx.setTransform(k, 0, 0, k, 0, 0);
    ctx.lineCap = "round";
    ctx.lineJoin = "round";
    ctx.lineWidth = PEN_WIDTH;
    ctx.strokeStyle = ctx.fillStyle = getComputedStyle(canvas).color || "#111";
    for (const stroke of strokes) if (stroke.length) drawStroke(ctx, stroke);
  }
}

function drawStroke(ctx, stroke) {
  if (stroke.length === 1) {
    const [x, y] = stroke[0];
    ctx.beginPath();
    ctx.arc(x, y, PEN_WIDTH / 2, 0, 2 * Math.PI);
    ctx.fill();
    return;
  }
  ctx.beginPath();
  ctx.moveTo(stroke[0][0], stroke[0][1]);
  // Quadratic curves through segment midpoints keep fast, sparse strokes smooth.
  for (let i = 1; i < stroke.length - 1; i++) {
    const [x, y] = stroke[i];
    const [nx, ny] = stroke[i + 1];
    ctx.quadraticCurveTo(x, y, (x + nx) / 2, (y + ny) / 2);
  }
  const last = stroke[stroke.length - 1];
  ctx.lineTo(last[0], last[1]);
  ctx.stroke();
}

/** The 28x28 model input (base64 of 784 bytes, 255 = ink) painted on a 28x28 canvas. */
export function paintPreview(canvas, base64) {
  const ctx = canvas.getContext("2d");
  const image = ctx.createImageData(28, 28);
  if (base64) {
    const bytes = Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
    for (let i = 0; i < 784 && i < bytes.length; i++) {
      const v = 255 - bytes[i]; // dark ink on a light ground, like the canvas
      image.data.set([v, v, v, 255], i * 4);
    }
  } else {
    image.data.fill(255);
  }
  ctx.putImageData(image, 0, 0);
}
