// A shared drawing as this page sees it: a pure reducer of the server's room messages.
// Belongs here: who is in the room, this page's role, the other members' strokes. Not here:
// this page's own strokes (ink.js), which a room message changes only through the `ink`
// action the reducer returns. No DOM, no socket.

/** Drawing alone. */
export const SOLO = Object.freeze({
  room: null,
  role: null, // "draw" | "watch" in a room
  member: null, // this page's member id in the room
  members: [], // [{member, role}] in the order they came
  tokens: {}, // {draw?, watch?}: the links this page can hand out
  others: new Map(), // stroke id -> {author, points, open}: every member's strokes but ours
});

/**
 * The state after a room message (as protocol.parse reads it), and what it does to this page's
 * own ink: null, {load: strokes}, {clear: {keepOpen: true}} or {append: strokes}.
 * `context`: {me: this session's id, token: the token this page joined with, if any}.
 */
export function reduce(state, message, context = {}) {
  const step = STEPS[message.type];
  return step ? step(state, message, context) : { state, ink: null };
}

/** Back to drawing alone: the other members' strokes become this page's own. */
export function leave(state) {
  return { state: SOLO, ink: { append: otherStrokes(state) } };
}

/** The other members' strokes, in the order they were started. */
export function otherStrokes(state) {
  return [...state.others.values()].map((s) => s.points).filter((points) => points.length);
}

const STEPS = {
  shared: (state, m, { me }) => ({
    state: {
      ...SOLO,
      room: m.room,
      role: "draw",
      member: me,
      members: [{ member: me, role: "draw" }],
      tokens: { draw: m.drawToken, watch: m.watchToken },
    },
    ink: null,
  }),

  joined: (state, m, { token }) => {
    const mine = m.strokes.filter((s) => s.author === m.member).map((s) => s.points);
    const others = new Map();
    for (const s of m.strokes) {
      if (s.author !== m.member) others.set(s.id, { author: s.author, points: s.points, open: s.open });
    }
    // Back in the same room (a resumed session): the links stay; else the one we came with.
    const tokens = state.room === m.room ? state.tokens : token ? { [m.role]: token } : {};
    const next = {
      ...SOLO,
      room: m.room,
      role: m.role,
      member: m.member,
      members: m.members,
      tokens,
      others,
    };
    return { state: next, ink: { load: mine } };
  },

  left: (state) => leave(state),

  presence: (state, m) => {
    const members = state.members.filter((x) => x.member !== m.member);
    if (m.event === "joined") members.push({ member: m.member, role: m.role });
    return { state: { ...state, members }, ink: null };
  },

  stroke: (state, m) => {
    if (m.author === state.member) return { state, ink: null };
    const others = new Map(state.others);
    const stroke = others.get(m.stroke);
    if (m.event === "start" || !stroke) {
      others.set(m.stroke, { author: m.author, points: m.points, open: m.event !== "end" });
    } else {
      const points = [...stroke.points, ...m.points];
      others.set(m.stroke, { ...stroke, points, open: m.event !== "end" });
    }
    return { state: { ...state, others }, ink: null };
  },

  undone: (state, m) => {
    if (m.author === state.member) return { state, ink: null }; // taken back here already
    const others = new Map(state.others);
    others.delete(m.stroke);
    return { state: { ...state, others }, ink: null };
  },

  cleared: (state, m) => {
    // The page clears at once and then hears its own clear back; in between, strokes the
    // server applied before that clear may still arrive, so the echo clears them too.
    const others = new Map();
    for (const [id, s] of state.others) {
      if (s.open) others.set(id, { ...s, points: [] }); // still being drawn: goes on, emptied
    }
    const mine = m.by === state.member; // this page's ink was cleared here already
    return { state: { ...state, others }, ink: mine ? null : { clear: { keepOpen: true } } };
  },
};
