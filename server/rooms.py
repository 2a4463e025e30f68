"""Shared drawing sessions (rooms) and resumable sessions: the pure core.

Belongs here: room ids and secret tokens, membership and roles, the shared stroke list with
its authors, presence events, limits and expiry; and the registry of parked sessions that a
resume token brings back. Must not: do I/O, know aiohttp or the model, or read a clock (a
method that needs the time takes `now`). An illegal operation raises RoomError with a stable
code and leaves every piece of state exactly as it was.

Shared canvas semantics: strokes keep the order they were started in, each with its author.
Undo removes the caller's own open stroke, else the caller's own last stroke (never someone
else's); with nothing of the caller's left it does nothing. Clear removes all ink, everyone's;
a stroke another drawer is still drawing stays open, emptied, so their next points continue
it. Watchers see everything and can change nothing.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum, StrEnum
from typing import Generic, TypeVar

from server.errors import DigitsError

Point = tuple[float, ...]  # (x, y) or (x, y, t), as in server.protocol
Points = tuple[Point, ...]

ROOM_ID_BYTES = 9  # 12 characters; the id is not what keeps a room private
TOKEN_BYTES = 24  # 32 characters, 192 bits: the tokens are the secrets


class RoomCode(StrEnum):
    """Stable codes of room and resume errors; server.hub maps them onto server.errors.Code
    (the resume codes travel in welcome.resume_error instead)."""

    REFUSED = "room_refused"  # unknown room, wrong or expired token: deliberately one code
    ROOM_FULL = "room_full"
    TOO_MANY_ROOMS = "too_many_rooms"
    ALREADY_IN_ROOM = "already_in_room"
    NOT_IN_ROOM = "not_in_room"
    WATCH_ONLY = "watch_only"  # a watcher tried to draw, undo or clear
    NO_STROKE = "no_stroke"  # points or end with no open stroke
    TOO_MANY_STROKES = "too_many_strokes"
    TOO_MANY_POINTS = "too_many_points"
    RESUME_EXPIRED = "resume_expired"
    RESUME_UNKNOWN = "resume_unknown"
    TOO_MANY_PARKED = "too_many_parked"


class RoomError(DigitsError):
    """An illegal room or resume operation; nothing was changed."""

    def __init__(self, code: RoomCode, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


class Role(StrEnum):
    DRAW = "draw"
    WATCH = "watch"


class Op(Enum):
    """The operations that change a room's ink."""

    START = "start"
    POINTS = "points"
    END = "end"
    UNDO = "undo"
    CLEAR = "clear"


class Pen(Enum):
    """Whether a member has an open stroke."""

    UP = "up"
    DOWN = "down"


#: (role, pen, op) -> pen afterwards. A triple missing here is illegal: watchers get
#: WATCH_ONLY, a drawer with the pen up sending points or end gets NO_STROKE.
TABLE: dict[tuple[Role, Pen, Op], Pen] = {
    **{(Role.DRAW, pen, Op.START): Pen.DOWN for pen in Pen},
    (Role.DRAW, Pen.DOWN, Op.POINTS): Pen.DOWN,
    (Role.DRAW, Pen.DOWN, Op.END): Pen.UP,
    **{(Role.DRAW, pen, op): Pen.UP for pen in Pen for op in (Op.UNDO, Op.CLEAR)},
}


@dataclass(frozen=True, slots=True)
class RoomSettings:
    """Room limits; all are settings and all are announced to members."""

    max_members: int = 16
    max_rooms: int = 1000
    empty_ttl_s: float = 300.0  # a room empty this long is gone
    max_strokes: int = 100
    max_points: int = 20000
    max_rooms_per_origin: int = 20  # rooms created from one client address, alive at once


@dataclass(frozen=True, slots=True)
class Share:
    """What the owner gets back from `create`: give out the tokens, not the room."""

    room: str
    draw_token: str
    watch_token: str


@dataclass(frozen=True, slots=True)
class Stroke:
    id: int
    author: str
    points: Points
    open: bool


# ---- events: what to tell the room's members -----------------------------------------------


@dataclass(frozen=True, slots=True)
class Joined:
    room: str
    member: str
    role: Role


@dataclass(frozen=True, slots=True)
class Left:
    room: str
    member: str


@dataclass(frozen=True, slots=True)
class StrokeStarted:
    room: str
    stroke: Stroke


@dataclass(frozen=True, slots=True)
class StrokePoints:
    room: str
    stroke_id: int
    author: str
    points: Points


@dataclass(frozen=True, slots=True)
class StrokeEnded:
    room: str
    stroke_id: int
    author: str


@dataclass(frozen=True, slots=True)
class Undone:
    room: str
    stroke_id: int
    author: str


@dataclass(frozen=True, slots=True)
class Cleared:
    room: str
    by: str


Event = Joined | Left | StrokeStarted | StrokePoints | StrokeEnded | Undone | Cleared


# ---- one room ------------------------------------------------------------------------------


@dataclass(slots=True)
class Member:
    role: Role
    stroke: int | None = None  # id of the member's open stroke

    @property
    def pen(self) -> Pen:
        return Pen.UP if self.stroke is None else Pen.DOWN


@dataclass(slots=True)
class Room:
    id: str
    draw_token: str
    watch_token: str
    members: dict[str, Member] = field(default_factory=dict)
    strokes: list[Stroke] = field(default_factory=list)
    next_stroke: int = 1
    empty_since: float | None = None
    origin: str = ""  # the creator's client address, for the per-origin quota

    @property
    def points(self) -> int:
        return sum(len(s.points) for s in self.strokes)

    def expired(self, now: float, ttl: float) -> bool:
        return self.empty_since is not None and now - self.empty_since >= ttl

    def index(self, stroke_id: int) -> int:
        return next(i for i, s in enumerate(self.strokes) if s.id == stroke_id)


def _refused() -> RoomError:
    return RoomError(RoomCode.REFUSED, "no room with that token (wrong, expired or unknown)")


class Rooms:
    """The server's rooms. Members are named by the caller (e.g. session ids); a member is
    in at most one room. Mutating methods return the events to send to the room."""

    def __init__(self, settings: RoomSettings | None = None) -> None:
        self.settings = settings or RoomSettings()
        self._rooms: dict[str, Room] = {}
        self._room_of: dict[str, str] = {}
        self._dummy = secrets.token_urlsafe(TOKEN_BYTES)  # compared when the room is unknown

    # ---- queries ------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._rooms)

    def __contains__(self, room_id: object) -> bool:
        return room_id in self._rooms

    def room_of(self, member: str) -> str | None:
        return self._room_of.get(member)

    def members(self, room_id: str) -> dict[str, Role]:
        return {m: info.role for m, info in self._rooms[room_id].members.items()}

    def strokes(self, room_id: str) -> tuple[Stroke, ...]:
        """The shared canvas, in the order strokes were started (open ones included)."""
        return tuple(self._rooms[room_id].strokes)

    def ink(self, room_id: str) -> tuple[Points, ...]:
        """The points to predict from: every stroke with ink, in order."""
        return tuple(s.points for s in self._rooms[room_id].strokes if s.points)

    # ---- membership ---------------------------------------------------------------------

    def create(
        self, owner: str, now: float, strokes: Sequence[Points] = (), origin: str = ""
    ) -> Share:
        """A new room with `owner` in it as a drawer, its canvas seeded with the owner's
        `strokes`; `origin` (the client's address) counts against its own quota.
        Raises TOO_MANY_ROOMS, ALREADY_IN_ROOM, or a stroke limit."""
        self._not_in_room(owner)
        live = [r for r in self._rooms.values() if not r.expired(now, self.settings.empty_ttl_s)]
        if len(live) >= self.settings.max_rooms:
            raise RoomError(RoomCode.TOO_MANY_ROOMS, "too many shared sessions; try later")
        if origin and sum(r.origin == origin for r in live) >= self.settings.max_rooms_per_origin:
            text = "too many shared sessions from one address; leave some, or try later"
            raise RoomError(RoomCode.TOO_MANY_ROOMS, text)
        seeded = [Stroke(i, owner, tuple(p), False) for i, p in enumerate(strokes, 1)]
        self._check_ink(len(seeded), sum(len(s.points) for s in seeded))
        draw, watch = secrets.token_urlsafe(TOKEN_BYTES), secrets.token_urlsafe(TOKEN_BYTES)
        room = Room(self._new_id(), draw, watch, origin=origin)
        room.strokes, room.next_stroke = seeded, len(seeded) + 1
        room.members[owner] = Member(Role.DRAW)
        self._rooms[room.id] = room
        self._room_of[owner] = room.id
        return Share(room.id, room.draw_token, room.watch_token)

    def join(self, room_id: str, token: str, member: str, now: float) -> Joined:
        """Enter a room with its draw or watch token. An unknown room, a wrong token and
        an expired room are the same REFUSED error, found in the same time."""
        self._not_in_room(member)
        room = self._rooms.get(room_id)
        role = self._role_for(room, token)
        if room is None or role is None or room.expired(now, self.settings.empty_ttl_s):
            raise _refused()
        if len(room.members) >= self.settings.max_members:
            raise RoomError(RoomCode.ROOM_FULL, f"at most {self.settings.max_members} members")
        room.members[member] = Member(role)
        room.empty_since = None
        self._room_of[member] = room.id
        return Joined(room.id, member, role)

    def leave(self, member: str, now: float) -> list[Event]:
        """Leave the room; an open stroke is kept as drawn. The last one out starts the
        room's expiry clock."""
        room = self._room(member)
        events: list[Event] = []
        if room.members[member].stroke is not None:
            events.extend(self._end(room, member))
        del room.members[member], self._room_of[member]
        if not room.members:
            room.empty_since = now
        events.append(Left(room.id, member))
        return events

    def lift(self, member: str) -> list[Event]:
        """End the member's open stroke as drawn, if any (their connection dropped)."""
        room = self._room(member)
        return self._end(room, member) if room.members[member].stroke is not None else []

    def role(self, member: str) -> Role:
        """The member's role in their room; NOT_IN_ROOM if in none."""
        return self._room(member).members[member].role

    def expire(self, now: float) -> list[str]:
        """Forget rooms that have been empty for `empty_ttl_s`; returns their ids."""
        gone = [r.id for r in self._rooms.values() if r.expired(now, self.settings.empty_ttl_s)]
        for room_id in gone:
            del self._rooms[room_id]
        return gone

    # ---- the shared canvas --------------------------------------------------------------

    def start(self, member: str, points: Points = ()) -> list[Event]:
        """Begin a stroke (ending the member's open one first)."""
        room = self._allowed(member, Op.START)
        self._check_ink(len(room.strokes) + 1, room.points + len(points))
        events = self._end(room, member) if room.members[member].stroke is not None else []
        stroke = Stroke(room.next_stroke, member, tuple(points), True)
        room.strokes.append(stroke)
        room.next_stroke += 1
        room.members[member].stroke = stroke.id
        return [*events, StrokeStarted(room.id, stroke)]

    def extend(self, member: str, points: Points) -> list[Event]:
        """Add points to the member's open stroke."""
        room = self._allowed(member, Op.POINTS)
        self._check_ink(len(room.strokes), room.points + len(points))
        return [self._append(room, member, points)]

    def end(self, member: str, points: Points = ()) -> list[Event]:
        """End the member's open stroke, with its last points if any."""
        room = self._allowed(member, Op.END)
        self._check_ink(len(room.strokes), room.points + len(points))
        events: list[Event] = [self._append(room, member, points)] if points else []
        return [*events, *self._end(room, member)]

    def undo(self, member: str) -> list[Event]:
        """Remove the member's open stroke, else their last stroke; nothing if none."""
        room = self._allowed(member, Op.UNDO)
        own = [s for s in room.strokes if s.author == member]
        if not own:
            return []
        target = next((s for s in own if s.open), own[-1])
        del room.strokes[room.index(target.id)]
        room.members[member].stroke = None
        return [Undone(room.id, target.id, member)]

    def clear(self, member: str) -> list[Event]:
        """Remove all ink. Other drawers' open strokes stay open, emptied."""
        room = self._allowed(member, Op.CLEAR)
        room.members[member].stroke = None
        room.strokes = [
            dataclasses.replace(s, points=()) for s in room.strokes if s.open and s.author != member
        ]
        return [Cleared(room.id, member)]

    # ---- helpers ------------------------------------------------------------------------

    def _new_id(self) -> str:
        while (room_id := secrets.token_urlsafe(ROOM_ID_BYTES)) in self._rooms:
            pass  # 72 random bits: practically never taken
        return room_id

    def _role_for(self, room: Room | None, token: str) -> Role | None:
        """The token's role in `room`, comparing in constant time whatever the answer."""
        given = token.encode("utf-8", "replace")
        draw = (room.draw_token if room else self._dummy).encode()
        watch = (room.watch_token if room else self._dummy).encode()
        is_draw, is_watch = hmac.compare_digest(given, draw), hmac.compare_digest(given, watch)
        return Role.DRAW if is_draw else Role.WATCH if is_watch else None

    def _not_in_room(self, member: str) -> None:
        if member in self._room_of:
            raise RoomError(RoomCode.ALREADY_IN_ROOM, "already in a shared session; leave first")

    def _room(self, member: str) -> Room:
        room_id = self._room_of.get(member)
        if room_id is None:
            raise RoomError(RoomCode.NOT_IN_ROOM, "not in a shared session")
        return self._rooms[room_id]

    def _allowed(self, member: str, op: Op) -> Room:
        """The member's room if `TABLE` allows `op` now; else the named error."""
        room = self._room(member)
        info = room.members[member]
        if (info.role, info.pen, op) in TABLE:
            return room
        if info.role is Role.WATCH:
            raise RoomError(RoomCode.WATCH_ONLY, "watchers cannot draw, undo or clear")
        raise RoomError(RoomCode.NO_STROKE, "no open stroke: send start first")

    def _check_ink(self, strokes: int, points: int) -> None:
        lim = self.settings
        if strokes > lim.max_strokes:
            raise RoomError(RoomCode.TOO_MANY_STROKES, f"at most {lim.max_strokes} strokes")
        if points > lim.max_points:
            raise RoomError(RoomCode.TOO_MANY_POINTS, f"at most {lim.max_points} points")

    def _append(self, room: Room, member: str, points: Points) -> StrokePoints:
        stroke_id = room.members[member].stroke
        assert stroke_id is not None
        i = room.index(stroke_id)
        room.strokes[i] = dataclasses.replace(
            room.strokes[i], points=room.strokes[i].points + tuple(points)
        )
        return StrokePoints(room.id, stroke_id, member, tuple(points))

    def _end(self, room: Room, member: str) -> list[Event]:
        stroke_id = room.members[member].stroke
        assert stroke_id is not None
        i = room.index(stroke_id)
        room.strokes[i] = dataclasses.replace(room.strokes[i], open=False)
        room.members[member].stroke = None
        return [StrokeEnded(room.id, stroke_id, member)]


# ---- resumable sessions ----------------------------------------------------------------------

S = TypeVar("S")


class Resumes(Generic[S]):
    """Sessions parked when their connection dropped, each waiting `grace_s` for its
    resume token. Tokens are kept hashed, so a lookup's timing says nothing about them.
    A token that expired is remembered for `remember_s` to tell "expired" from "unknown"."""

    def __init__(
        self, grace_s: float = 60.0, max_parked: int = 10000, remember_s: float | None = None
    ) -> None:
        self.grace_s, self.max_parked = grace_s, max_parked
        self.remember_s = 10 * grace_s if remember_s is None else remember_s
        self._parked: dict[bytes, tuple[float, S]] = {}  # key -> (deadline, session)
        self._expired: dict[bytes, float] = {}  # key -> when to forget it

    def __len__(self) -> int:
        return len(self._parked)

    @staticmethod
    def _key(token: str) -> bytes:
        return hashlib.sha256(token.encode("utf-8", "replace")).digest()

    def park(self, session: S, now: float, token: str | None = None) -> str:
        """Keep `session` until now + grace_s under `token` (the one announced in welcome)
        or a new one; returns the token. Raises TOO_MANY_PARKED when full."""
        token = token or secrets.token_urlsafe(TOKEN_BYTES)
        key = self._key(token)
        if key not in self._parked and len(self._parked) >= self.max_parked:
            raise RoomError(RoomCode.TOO_MANY_PARKED, "too many sessions waiting to resume")
        self._parked[key] = (now + self.grace_s, session)
        self._expired.pop(key, None)
        return token

    def resume(self, token: str, now: float) -> S:
        """The parked session, which leaves the registry (a token works once).
        Raises RESUME_EXPIRED after the grace period, RESUME_UNKNOWN for any other token."""
        key = self._key(token)
        entry = self._parked.get(key)
        if entry is None:
            if key in self._expired:
                raise _resume_expired()
            raise RoomError(RoomCode.RESUME_UNKNOWN, "no session to resume with that token")
        deadline, session = entry
        if now >= deadline:
            raise _resume_expired()
        del self._parked[key]
        return session

    def expire(self, now: float) -> list[S]:
        """Drop sessions past their grace period (returned, to be released) and forget
        expired tokens past `remember_s`."""
        gone = [key for key, (deadline, _) in self._parked.items() if now >= deadline]
        sessions = [self._parked.pop(key)[1] for key in gone]
        for key in gone:
            self._expired[key] = now + self.remember_s
        for key in [k for k, forget_at in self._expired.items() if now >= forget_at]:
            del self._expired[key]
        while len(self._expired) > self.max_parked:
            del self._expired[next(iter(self._expired))]
        return sessions


def _resume_expired() -> RoomError:
    return RoomError(RoomCode.RESUME_EXPIRED, "the session expired; start a new one")
