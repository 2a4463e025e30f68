"""One drawing session: its state, its ink, and when it needs a prediction.

Belongs here: the state table, the strokes and their limits, the latest client seq, and
coalescing (at most one prediction in flight, plus one "dirty" flag). Pure: messages in,
actions out; no I/O, no clock, no model. An illegal message raises ClientError and leaves
the session exactly as it was.

In a shared session (`room` set) the ink lives in the room (server.rooms): the session
hands ink, recognize, share, join and leave over as `ToRoom` actions and keeps no ink of
its own until it leaves.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum

import numpy as np
import numpy.typing as npt

from server.errors import ClientError, Code
from server.protocol import (
    Clear,
    ClientMessage,
    End,
    Hello,
    Join,
    Leave,
    Limits,
    Ping,
    Points,
    PointsMsg,
    Pong,
    Recognize,
    ServerMessage,
    Share,
    Start,
    Undo,
    Welcome,
)

Stroke = npt.NDArray[np.float64]  # (n, 2): x, y


class State(Enum):
    """Where a session is; `TABLE` says which messages each state accepts."""

    AWAIT_HELLO = "await_hello"
    IDLE = "idle"  # no open stroke
    DRAWING = "drawing"  # a stroke is open


#: (state, message type) -> next state. A pair missing here is illegal in that state.
#: Share and join keep the state: entering the room (`enter_room`) happens only if the
#: room registry accepts. Leave is only legal in a room, where `ROOM_ROUTED` applies.
TABLE: dict[tuple[State, type], State] = {
    (State.AWAIT_HELLO, Hello): State.IDLE,
    **{(State.IDLE, t): State.IDLE for t in (Undo, Clear, Recognize, Ping, Share, Join)},
    (State.IDLE, Start): State.DRAWING,
    **{(State.DRAWING, t): State.DRAWING for t in (Start, PointsMsg, Recognize, Ping)},
    **{(State.DRAWING, t): State.DRAWING for t in (Share, Join)},
    **{(State.DRAWING, t): State.IDLE for t in (End, Undo, Clear)},
}

#: Messages a session in a room hands to the room instead of its own state table.
ROOM_ROUTED = (Start, PointsMsg, End, Undo, Clear, Recognize, Share, Join, Leave)


def _illegal(state: State, msg: ClientMessage) -> ClientError:
    """The error for a message that `TABLE` does not accept in `state`."""
    if state is State.AWAIT_HELLO:
        return ClientError(Code.HELLO_FIRST, "the first message must be hello", msg.seq)
    if isinstance(msg, Hello):
        return ClientError(Code.ALREADY_HELLO, "hello was already received", msg.seq)
    if isinstance(msg, Leave):
        return ClientError(Code.NOT_IN_ROOM, "not in a shared session", msg.seq)
    return ClientError(Code.NO_STROKE, "no open stroke: send start first", msg.seq)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The ink to predict, as of client message `seq`. Arrays are never mutated later."""

    seq: int | None
    final: bool
    strokes: tuple[Stroke, ...]

    @property
    def points(self) -> int:
        return sum(len(s) for s in self.strokes)


@dataclass(frozen=True, slots=True)
class Send:
    """Action: send this message to the client."""

    message: ServerMessage


@dataclass(frozen=True, slots=True)
class Predict:
    """Action: predict this snapshot, then call `Session.prediction_done`."""

    snapshot: Snapshot


@dataclass(frozen=True, slots=True)
class ToRoom:
    """Action: the room registry decides this message (see server.hub)."""

    message: ClientMessage


Action = Send | Predict | ToRoom


@dataclass(frozen=True, slots=True)
class Identity:
    """What welcome tells a client about this session and the server."""

    session: str
    resume_token: str
    model: str
    accelerator: str
    runtime: str
    limits: Limits = field(default_factory=Limits)
    client: str = ""  # the client's address, for per-client quotas; never sent


class Session:
    """The state of one connection's drawing. Feed it messages with `apply`."""

    def __init__(self, identity: Identity) -> None:
        self.identity = identity
        self.limits = identity.limits
        self.state = State.AWAIT_HELLO
        self.top_k = 3
        self.preview = False
        self.seq: int | None = None  # latest client seq seen on an ink or recognize message
        self.done: list[Stroke] = []  # finished strokes
        self.open: list[tuple[float, float]] = []  # the open stroke's points
        self.total_points = 0
        self.in_flight = False
        self.dirty = False  # the ink changed since the prediction in flight was taken
        self.final_wanted = False
        self.room: str | None = None  # the shared session this one is in
        self.resume_error: str | None = None  # told in welcome: why `hello.resume` failed

    @property
    def strokes(self) -> int:
        """Number of strokes with ink, the open one included."""
        return len(self.done) + (1 if self.open else 0)

    def apply(self, msg: ClientMessage) -> list[Action]:
        """Apply one client message; return what to send and what to predict.
        Raises ClientError, leaving the session unchanged, if the message is illegal here."""
        if self.room is not None and isinstance(msg, ROOM_ROUTED):
            return [ToRoom(msg)]
        following = TABLE.get((self.state, type(msg)))
        if following is None:
            raise _illegal(self.state, msg)
        actions = self._effect(msg)
        self.state = following
        return actions

    def prediction_done(self) -> list[Action]:
        """The prediction in flight has been answered (or dropped); maybe start the next."""
        self.in_flight = False
        return self._next()

    def refresh(self, pending: Snapshot) -> Snapshot:
        """Late binding: the snapshot to predict instead of `pending`, the prediction in
        flight, as it leaves the queue. A live one becomes the newest ink, so what queued
        behind it is not predicted twice; a final one stays as recognize asked."""
        if pending.final or self.final_wanted or not self.dirty:
            return pending
        self.dirty = False
        return self.snapshot(False)

    def ink(self) -> tuple[Points, ...]:
        """The session's own strokes as point tuples (the open one included), to seed a room."""
        return tuple(tuple(map(tuple, s.tolist())) for s in self.snapshot(False).strokes)

    # ---- shared and resumed sessions ----------------------------------------------------

    def enter_room(self, room: str) -> None:
        """The room registry accepted share or join: from now on the room holds the ink."""
        self.room = room
        self._clear()
        self.state = State.IDLE
        self.dirty = self.final_wanted = False

    def leave_room(self, strokes: Sequence[Points], seq: int | None = None) -> list[Action]:
        """Left the room (`leave` had `seq`), keeping `strokes`, the room's ink, as this
        session's own; a prediction of it follows."""
        self.room = None
        self._see(seq)
        self.done = [np.array([p[:2] for p in s], dtype=np.float64) for s in strokes if s]
        self.open, self.total_points = [], sum(len(s) for s in self.done)
        self.state, self.dirty = State.IDLE, True
        return self._next()

    def park(self) -> None:
        """The connection dropped: end the open stroke as drawn, forget what was pending."""
        self._close_open()
        if self.state is State.DRAWING:
            self.state = State.IDLE
        self.in_flight = self.dirty = self.final_wanted = False

    def resume(self, hello: Hello, resume_token: str) -> list[Action]:
        """A parked session taken up by a new connection: welcome it (resumed, with a new
        resume token), then predict its ink so the client sees where it stands."""
        self.identity = dataclasses.replace(self.identity, resume_token=resume_token)
        self.in_flight = self.dirty = self.final_wanted = False
        welcome = dataclasses.replace(self._welcome(hello), resumed=True)
        if self.room is not None:  # the room's own prediction follows `joined`
            return [Send(welcome)]
        self.dirty = True
        return [Send(welcome), *self._next()]

    def snapshot(self, final: bool) -> Snapshot:
        strokes = list(self.done)
        if self.open:
            strokes.append(np.array(self.open, dtype=np.float64))
        return Snapshot(self.seq, final, tuple(strokes))

    # ---- effects of each legal message --------------------------------------------------

    def _effect(self, msg: ClientMessage) -> list[Action]:
        if isinstance(msg, Hello):
            return [Send(self._welcome(msg))]
        if isinstance(msg, Ping):
            return [Send(Pong(msg.seq))]
        if isinstance(msg, Share | Join):
            return [ToRoom(msg)]
        if isinstance(msg, Recognize):
            self._see(msg.seq)
            self.final_wanted = True
            return self._next()
        if isinstance(msg, Start | PointsMsg | End):
            self._draw(msg)
        elif isinstance(msg, Undo):
            self._undo()
        elif isinstance(msg, Clear):
            self._clear()
        self._see(msg.seq)
        self.dirty = True
        return self._next()

    def _welcome(self, hello: Hello) -> Welcome:
        self.top_k, self.preview = hello.top_k, hello.preview
        i = self.identity
        return Welcome(
            i.session, i.resume_token, i.model, i.accelerator, i.runtime,
            hello.top_k, hello.preview, i.limits, resume_error=self.resume_error,
            strokes=self.strokes, points=self.total_points,
        )  # fmt: skip

    def _draw(self, msg: Start | PointsMsg | End) -> None:
        self._check_room(msg.points, new_stroke=isinstance(msg, Start))
        if isinstance(msg, Start):
            self._close_open()
        self.open.extend((p[0], p[1]) for p in msg.points)
        self.total_points += len(msg.points)
        if isinstance(msg, End):
            self._close_open()

    def _check_room(self, points: Points, new_stroke: bool) -> None:
        lim = self.limits
        if self.total_points + len(points) > lim.max_points_per_session:
            text = f"at most {lim.max_points_per_session} points per session"
            raise ClientError(Code.TOO_MANY_POINTS, text)
        after = len(self.done) + (1 if self.open else 0) + 1  # the open one closes first
        if new_stroke and after > lim.max_strokes_per_session:
            text = f"at most {lim.max_strokes_per_session} strokes per session"
            raise ClientError(Code.TOO_MANY_STROKES, text)

    def _close_open(self) -> None:
        if self.open:
            self.done.append(np.array(self.open, dtype=np.float64))
        self.open = []

    def _undo(self) -> None:
        if self.state is State.DRAWING:
            self.total_points -= len(self.open)
            self.open = []
        elif self.done:
            self.total_points -= len(self.done.pop())

    def _clear(self) -> None:
        self.done, self.open, self.total_points = [], [], 0

    def _see(self, seq: int | None) -> None:
        if seq is not None:
            self.seq = seq

    # ---- coalescing ---------------------------------------------------------------------

    def _next(self) -> list[Action]:
        """Start a prediction of the latest ink if one is wanted and none is in flight."""
        if self.in_flight or not (self.dirty or self.final_wanted):
            return []
        final = self.final_wanted
        self.dirty = self.final_wanted = False
        self.in_flight = True
        return [Predict(self.snapshot(final))]
