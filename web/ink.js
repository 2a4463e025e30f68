// The drawing: strokes in logical units and how they look on a canvas.
// No network and no DOM events here; app.js feeds points in and decides what to send.

/** Logical units across the square canvas, whatever its size in CSS pixels. */
export const UNITS = 1000;
/** Pen width in logical units: thick, like the ink the model was trained on. */
export const PEN_WIDTH = 46;

export class Ink {
  constructor() {
    this.strokes = []; // finished strokes, each an array of [x, y]
    this.current = null; // the stroke being drawn, or null
    this.points = 0; // points in all strokes
  }

  get isEmpty() {
    return this.strokes.length === 0 && this.current === null;
  }

  /** All strokes, the one being drawn included. */
  all() {
    return this.current ? [...this.strokes, this.current] : this.strokes;
  }

  begin(point) {
    this.end();
    this.current = [point];
    this.points += 1;
  }

  add(point) {
    if (!this.current) return;
    this.current.push(point);
    this.points += 1;
  }

  end() {
    if (!this.current) return;
    this.strokes.push(this.current);
    this.current = null;
  }

  /** Drop the last stroke (finishing any stroke in progress first); false if none. */
  undo() {
    this.end();
    const last = this.strokes.pop();
    if (last === undefined) return false;
    this.points -= last.length;
    return true;
  }

  clear() {
    this.strokes = [];
    this.current = null;
    this.points = 0;
  }
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

  render(ink) {
    const { ctx, canvas } = this;
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    const k = canvas.width / UNITS;
    ctx.setTransform(k, 0, 0, k, 0, 0);
    ctx.lineCap = "round";
    ctx.lineJoin = "round";
    ctx.lineWidth = PEN_WIDTH;
    ctx.strokeStyle = ctx.fillStyle = getComputedStyle(canvas).color || "#111";
    for (const stroke of ink.all()) drawStroke(ctx, stroke);
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
