"""The drawing: strokes with their authors, one open stroke per drawer, roles, undo and clear,
the ink limits, and the snapshot a prediction is made from. A solo drawing is a canvas with
one drawer; a shared one (a room) has an id and many members.

Belongs here: every rule about ink, decided in one transition table. Pure: messages in,
events (the protocol's room messages) out; no I/O, no clock, no model. An illegal message
raises ProtocolError and leaves the canvas exactly as it was.

Semantics: strokes keep the order they were started in. Undo removes the caller's own open
stroke, else the caller's own last stroke, never someone else's. Clear removes all ink; a
stroke another drawer is still drawing stays open, emptied, so their next points continue it.
A stroke ended without points is dropped. Watchers see everything and change nothing. Ink is
kept as the wire gave it (an int stays an int); it becomes arrays only in the recognizer.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import Enum, StrEnum

from protocol import (
    Clear,
    Cleared,
    Code,
    End,
    Ink,
    Joined,
    Limits,
    Member,
    Points,
    PointsMsg,
    Presence,
    ProtocolError,
    RoomMessage,
    RoomStroke,
    Start,
    StrokeEvent,
    Undo,
    Undone,
)


class Role(StrEnum):
    DRAW = "draw"
    WATCH = "watch"


class Pen(Enum):
    """Whether a member has an open stroke."""

    UP = "up"
    DOWN = "down"


#: (role, pen, message type) -> pen afterwards. A triple missing here is illegal: watchers
#: get WATCH_ONLY, a drawer with the pen up sending points or end gets NO_STROKE.
TABLE: dict[tuple[Role, Pen, type], Pen] = {
    **{(Role.DRAW, pen, Start): Pen.DOWN for pen in Pen},
    (Role.DRAW, Pen.DOWN, PointsMsg): Pen.DOWN,
    (Role.DRAW, Pen.DOWN, End): Pen.UP,
    **{(Role.DRAW, pen, kind): Pen.UP for pen in Pen for kind in (Undo, Clear)},
}

Event = RoomMessage  # what a change tells the other members: stroke, undone, cleared, presence


@dataclass(frozen=True, slots=True)
class InkLimits:
    max_strokes: int = 100
    max_points: int = 20000
    max_members: int = 16

    @classmethod
    def of(cls, limits: Limits) -> InkLimits:
        return cls(
            limits.max_strokes_per_session,
            limits.max_points_per_session,
            limits.max_members_per_room,
        )


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The ink to predict, as of each member's latest message (`seqs`). Never mutated."""

    ink: tuple[Points, ...]  # the strokes with points, in order
    version: int  # the canvas's ink changes so far
    seqs: dict[str, int | None]  # member -> latest seq it sent to this canvas
    final: bool = False
    asker: str | None = None  # for a final: the member that asked

    @property
    def points(self) -> int:
        return sum(len(s) for s in self.ink)

    def seq(self, member: str) -> int | None:
        return self.seqs.get(member)


@dataclass(slots=True)
class Drawer:
    """A member of a canvas: its role, its open stroke and its latest seq."""

    role: Role
    stroke: int | None = None
    seq: int | None = None

    @property
    def pen(self) -> Pen:
        return Pen.UP if self.stroke is None else Pen.DOWN


@dataclass(slots=True)
class Canvas:
    """One drawing. Feed it messages with `apply`; it returns the events for the room."""

    limits: InkLimits = field(default_factory=InkLimits)
    room: str | None = None  # set once shared; events are produced only then
    members: dict[str, Drawer] = field(default_factory=dict)
    strokes: list[RoomStroke] = field(default_factory=list)
    points: int = 0
    version: int = 0  # bumped by every accepted ink message
    _next_id: int = 1

    # ---- membership ---------------------------------------------------------------------

    def add(self, member: str, role: Role, seq: int | None = None) -> list[Event]:
        """A member comes in. Raises ROOM_FULL beyond max_members."""
        if len(self.members) >= self.limits.max_members:
            raise ProtocolError(Code.ROOM_FULL, f"at most {self.limits.max_members} members")
        self.members[member] = Drawer(role, seq=seq)
        return self._emit(Presence(self.room or "", "joined", member, role.value))

    def remove(self, member: str) -> list[Event]:
        """A member goes, its open stroke kept as drawn."""
        events = self.lift(member)
        role = self.members.pop(member).role
        return [*events, *self._emit(Presence(self.room or "", "left", member, role.value))]

    def lift(self, member: str) -> list[Event]:
        """End the member's open stroke as drawn, if any (its connection dropped)."""
        return self._end(member) if self.members[member].stroke is not None else []

    def see(self, member: str, seq: int | None) -> None:
        """The member's message `seq` was applied (a prediction names it from now on)."""
        if seq is not None:
            self.members[member].seq = seq

    # ---- ink ----------------------------------------------------------------------------

    def apply(self, member: str, msg: Ink) -> list[Event]:
        """Apply one ink message of `member`. Raises ProtocolError, changing nothing."""
        drawer = self.members[member]
        if (drawer.role, drawer.pen, type(msg)) not in TABLE:
            raise _illegal(drawer.role, msg.seq)
        if isinstance(msg, Start | PointsMsg | End):
            self._check(msg, drawer)
        events = self._effect(member, msg)
        self.see(member, msg.seq)
        self.version += 1
        return events

    def _effect(self, member: str, msg: Ink) -> list[Event]:
        if isinstance(msg, Start):
            return self._start(member, msg.points)
        if isinstance(msg, PointsMsg):
            return self._append(member, msg.points)
        if isinstance(msg, End):
            return [*self._append(member, msg.points), *self._end(member)]
        if isinstance(msg, Undo):
            return self._undo(member)
        return self._clear(member)

    def _check(self, msg: Start | PointsMsg | End, drawer: Drawer) -> None:
        if self.points + len(msg.points) > self.limits.max_points:
            text = f"at most {self.limits.max_points} points per session"
            raise ProtocolError(Code.TOO_MANY_POINTS, text, msg.seq)
        if isinstance(msg, Start) and len(self.strokes) + 1 > self.limits.max_strokes:
            text = f"at most {self.limits.max_strokes} strokes per session"
            raise ProtocolError(Code.TOO_MANY_STROKES, text, msg.seq)

    def _start(self, member: str, points: Points) -> list[Event]:
        events = self.lift(member)
        stroke = RoomStroke(self._next_id, member, points, True)
        self._next_id += 1
        self.strokes.append(stroke)
        self.points += len(points)
        self.members[member].stroke = stroke.id
        if self.room is None:
            return events
        return [*events, StrokeEvent(self.room, "start", stroke.id, member, points)]

    def _append(self, member: str, points: Points) -> list[Event]:
        if not points:
            return []
        i = self._index(self.members[member].stroke)
        stroke = self.strokes[i]
        self.strokes[i] = RoomStroke(stroke.id, member, stroke.points + points, True)
        self.points += len(points)
        if self.room is None:
            return []
        return [StrokeEvent(self.room, "points", stroke.id, member, points)]

    def _end(self, member: str) -> list[Event]:
        drawer = self.members[member]
        i = self._index(drawer.stroke)
        stroke = self.strokes[i]
        if stroke.points:
            self.strokes[i] = replace(stroke, open=False)
        else:
            del self.strokes[i]  # a stroke without ink is no stroke
        drawer.stroke = None
        return self._emit(StrokeEvent(self.room or "", "end", stroke.id, member))

    def _undo(self, member: str) -> list[Event]:
        drawer = self.members[member]
        own = [s for s in self.strokes if s.author == member]
        target = next((s for s in own if s.id == drawer.stroke), own[-1] if own else None)
        drawer.stroke = None
        if target is None:
            return []
        del self.strokes[self._index(target.id)]
        self.points -= len(target.points)
        return self._emit(Undone(self.room or "", target.id, member))

    def _clear(self, member: str) -> list[Event]:
        self.members[member].stroke = None
        self.strokes = [
            replace(s, points=()) for s in self.strokes if s.open and s.author != member
        ]
        self.points = 0
        return self._emit(Cleared(self.room or "", member))

    # ---- reading ------------------------------------------------------------------------

    @property
    def inked(self) -> int:
        """Strokes with points, the open ones included."""
        return sum(1 for s in self.strokes if s.points)

    def snapshot(self, final: bool = False, asker: str | None = None) -> Snapshot:
        ink = tuple(s.points for s in self.strokes if s.points)
        seqs = {m: d.seq for m, d in self.members.items()}
        return Snapshot(ink, self.version, seqs, final, asker)

    def state(self, member: str, seq: int | None) -> Joined:
        """The whole room, as a joiner (or a member resuming) receives it."""
        members = tuple(Member(m, d.role.value) for m, d in self.members.items())
        role = self.members[member].role.value
        return Joined(self.room or "", role, member, members, tuple(self.strokes), seq)

    def copy_for(self, member: str, seq: int | None) -> Canvas:
        """A solo canvas of `member` holding a copy of this ink, every stroke finished."""
        solo = Canvas(self.limits)
        solo.add(member, Role.DRAW, seq)
        for points in (s.points for s in self.strokes if s.points):
            solo.strokes.append(RoomStroke(solo._next_id, member, points, False))
            solo._next_id += 1
            solo.points += len(points)
        return solo

    # ---- helpers ------------------------------------------------------------------------

    def _index(self, stroke_id: int | None) -> int:
        """Where stroke `stroke_id` is; searched from the end, where open strokes are."""
        strokes = self.strokes
        for i in range(len(strokes) - 1, -1, -1):
            if strokes[i].id == stroke_id:
                return i
        raise KeyError(stroke_id)

    def _emit(self, event: Event) -> list[Event]:
        return [] if self.room is None else [event]


def _illegal(role: Role, seq: int | None) -> ProtocolError:
    if role is Role.WATCH:
        return ProtocolError(Code.WATCH_ONLY, "watchers cannot draw, undo or clear", seq)
    return ProtocolError(Code.NO_STROKE, "no open stroke: send start first", seq)
