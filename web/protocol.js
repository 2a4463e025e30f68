// The wire format as the page speaks it (docs/PROTOCOL.md, JSON text frames).
// Belongs here: every client message the page builds and every server message it reads, with
// their field names and types. Not here: the socket, the drawing, the page.

export const VERSION = 1;
/** Close code of a server process that is stopping (a deploy): reconnect at once and resume. */
export const CLOSE_SERVICE_RESTART = 1012;
export const VERDICTS = ["digit", "unsure", "not_digit"];

// ---- client -> server ------------------------------------------------------------------------

export const hello = ({ topK, preview, resume }) => ({
  type: "hello",
  version: VERSION,
  top_k: topK,
  preview,
  ...(resume ? { resume } : {}),
});
export const start = (points) => ({ type: "start", points });
export const points = (batch) => ({ type: "points", points: batch });
export const end = () => ({ type: "end" });
export const undo = () => ({ type: "undo" });
export const clear = () => ({ type: "clear" });
export const recognize = () => ({ type: "recognize" });
export const share = () => ({ type: "share" });
export const join = ({ room, token }) => ({ type: "join", room, token });
export const leave = () => ({ type: "leave" });

/** One message as a text frame, with its sequence number. */
export function encode(message, seq) {
  return JSON.stringify(seq === undefined ? message : { ...message, seq });
}

// ---- server -> client ------------------------------------------------------------------------

/** A text frame as a message the page understands, or null: malformed and unknown messages are
 * ignored (the protocol only ever adds messages and fields). */
export function parse(data) {
  if (typeof data !== "string") return null;
  let raw;
  try {
    raw = JSON.parse(data);
  } catch {
    return null;
  }
  if (raw === null || typeof raw !== "object" || typeof raw.type !== "string") return null;
  const read = READERS[raw.type];
  if (!read) return null;
  try {
    return { type: raw.type, ...read(raw) };
  } catch {
    return null; // a field of the wrong type
  }
}

const READERS = {
  welcome: (m) => ({
    session: str(m.session),
    resumeToken: typeof m.resume_token === "string" ? m.resume_token : null,
    resumed: m.resumed === true,
    model: typeof m.model === "string" ? m.model : "",
    accelerator: typeof m.accelerator === "string" ? m.accelerator : "",
    limits: m.limits && typeof m.limits === "object" ? m.limits : {},
    strokes: count(m.strokes),
    points: count(m.points),
  }),
  prediction: (m) => {
    const empty = m.empty === true || !Array.isArray(m.top) || m.top.length === 0;
    return {
      seq: seqOf(m),
      final: m.final === true,
      empty,
      top: empty ? [] : m.top.map((g) => ({ digit: count(g.digit), p: probability(g.p) })),
      // Servers before the verdict send none: their guesses count as digits.
      verdict: empty ? null : VERDICTS.includes(m.verdict) ? m.verdict : "digit",
      bbox: Array.isArray(m.bbox) ? m.bbox.map(Number) : null,
      input: typeof m.input === "string" ? m.input : null,
    };
  },
  error: (m) => ({
    code: str(m.code),
    message: typeof m.message === "string" ? m.message : "",
    seq: seqOf(m),
  }),
  pong: (m) => ({ seq: seqOf(m) }),
  shared: (m) => ({ room: str(m.room), drawToken: str(m.draw_token), watchToken: str(m.watch_token) }),
  joined: (m) => ({
    room: str(m.room),
    role: role(m.role),
    member: str(m.member),
    members: list(m.members).map((x) => ({ member: str(x.member), role: role(x.role) })),
    strokes: list(m.strokes).map((s) => ({
      id: count(s.id),
      author: str(s.author),
      points: pointsOf(s.points),
      open: s.open === true,
    })),
  }),
  left: (m) => ({ room: str(m.room) }),
  presence: (m) => ({
    event: m.event === "left" ? "left" : "joined",
    member: str(m.member),
    role: role(m.role),
  }),
  stroke: (m) => ({
    event: ["start", "points", "end"].includes(m.event) ? m.event : "points",
    stroke: count(m.stroke),
    author: str(m.author),
    points: pointsOf(m.points),
  }),
  undone: (m) => ({ stroke: count(m.stroke), author: str(m.author) }),
  cleared: (m) => ({ by: str(m.by) }),
};

function str(value) {
  if (typeof value !== "string") throw new TypeError("expected a string");
  return value;
}

function count(value) {
  return Number.isInteger(value) && value >= 0 ? value : 0;
}

function seqOf(m) {
  return Number.isInteger(m.seq) ? m.seq : null;
}

function probability(p) {
  return Math.max(0, Math.min(1, Number(p) || 0));
}

function role(value) {
  return value === "watch" ? "watch" : "draw";
}

function list(value) {
  return Array.isArray(value) ? value.filter((x) => x && typeof x === "object") : [];
}

/** Points as [x, y] (a timestamp, if any, is not the page's business). */
function pointsOf(value) {
  return Array.isArray(value) ? value.map((p) => [Number(p[0]), Number(p[1])]) : [];
}
